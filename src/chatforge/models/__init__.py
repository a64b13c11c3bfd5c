"""Model names -> local weights -> a loaded model + tokenizer with a chat template."""
