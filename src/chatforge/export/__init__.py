"""Export a model or training run as files other tools load: merged safetensors (hf) or GGUF (llama.cpp, Ollama).

    from chatforge.export.config import ExportConfig
    from chatforge.export.run import export
    export(ExportConfig(model="runs/lumora", format="gguf", quant="q8_0", out="exports/lumora", ollama=True))
"""
