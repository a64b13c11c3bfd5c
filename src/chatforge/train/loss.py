"""The LM head and the cross entropy in one pass over row chunks: the (N, V) logits never exist at once.

For a small model the vocabulary projection is a large share of a training step: SmolLM2-135M has a
49152-word vocabulary, so 1500 trained positions make a (1500, 49152) fp32 logits tensor of 295 MB, and
autograd keeps it, its log-softmax and their gradients (about 1.2 GB written per micro-batch). On a CPU that
traffic (and the page faults of allocating it afresh each time) costs more than the matmuls themselves.

`linear_cross_entropy` walks over chunks of ~8M logits (32 MB: they stay hot in cache); for each chunk it
computes logits -> log-sum-exp -> loss, and at once the gradient (softmax - one_hot), which it multiplies
back into the gradients of the hidden states (and of the head's weight when that is trained). backward()
only scales those by the incoming gradient. The same trick as Liger-Kernel's fused linear cross entropy.

`token_scores` is the no-grad twin for evaluation: per-token loss and next-token correctness.

HeadBypass makes a model return its final hidden states instead of logits (its LM head becomes the
identity for one call), so the model's own forward still runs end to end (DDP hooks, PEFT, autocast), and
checks once, on a short input, that head(hidden) gives exactly the model's logits; models that do more
after the head (Gemma's soft-capping, Cohere's logit scale) fail the check and keep the plain path.
"""

from __future__ import annotations

import torch

CHUNK_LOGITS = 1 << 23  # logits per chunk (8M fp32 = 32 MB)


class _Chunks:
    """Row chunks of the (N, V) logits, computed into two buffers reused for every chunk: fresh 32 MB tensors
    per chunk would cost a page fault per 4 KB on a CPU, more than the arithmetic on them."""

    def __init__(self, hidden, weight, bias, cd: torch.dtype):
        n, vocab = hidden.shape[0], weight.shape[0]
        self.hidden, self.w, self.bias, self.cd = hidden, weight.to(cd), bias, cd
        self.rows = max(1, min(n, CHUNK_LOGITS // vocab))  # (no rows: one-row buffers, no chunks)
        self.low = hidden.new_empty((self.rows, vocab), dtype=cd)  # matmul in/out dtype
        self.f32 = self.low if cd == torch.float32 else hidden.new_empty((self.rows, vocab), dtype=torch.float32)

    def __iter__(self):
        """(start, end, h (c, H) in cd, logits (c, V) fp32 - a view of the reused buffer)"""
        for s in range(0, self.hidden.shape[0], self.rows):
            e = min(s + self.rows, self.hidden.shape[0])
            h = self.hidden[s:e].to(self.cd)
            low, logits = self.low[:e - s], self.f32[:e - s]
            torch.mm(h, self.w.T, out=low)
            if logits is not low:
                logits.copy_(low)
            if self.bias is not None:
                logits += self.bias.float()
            yield s, e, h, logits


def _softmax_(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (c, V) -> softmax in place; returns the per-row loss (c,) = logsumexp - target logit."""
    target = logits.gather(1, targets[:, None])  # (c, 1)
    top = logits.amax(-1, keepdim=True)  # (c, 1), for a stable exp
    norm = logits.sub_(top).exp_().sum(-1, keepdim=True)  # (c, 1)
    logits.div_(norm)
    return (norm.log() + top - target).squeeze(1)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, cd):
        # hidden (N, H), weight (V, H), bias (V,) or None, targets (N,) -> summed loss, fp32 scalar
        with torch.autocast(hidden.device.type, enabled=False):
            chunks = _Chunks(hidden, weight, bias, cd)
            grad_h = hidden.new_empty(hidden.shape, dtype=cd) if hidden.requires_grad else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
            grad_b = torch.zeros_like(bias, dtype=torch.float32) if bias is not None and bias.requires_grad else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for s, e, h, logits in chunks:
                total += _softmax_(logits, targets[s:e]).sum()
                d = logits  # d loss / d logits = softmax - one_hot, (c, V)
                d[torch.arange(e - s, device=d.device), targets[s:e]] -= 1
                if grad_b is not None:
                    grad_b += d.sum(0)
                if d is not chunks.low[:e - s]:
                    d = chunks.low[:e - s].copy_(d)
                if grad_h is not None:
                    torch.mm(d, chunks.w, out=grad_h[s:e])  # (c, H)
                if grad_w is not None:
                    grad_w += (d.T @ h).float()  # (V, H)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad):
        grads = [None if g is None else (g * grad).to(dt) for g, dt in zip(ctx.saved_tensors, ctx.dtypes)]
        return *grads, None, None


def linear_cross_entropy(hidden, weight, bias, targets, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sum over the N rows of cross_entropy(hidden @ weight.T + bias, targets); differentiable.
    hidden (N, H), weight (V, H), bias (V,) or None, targets (N,) all valid (no ignore index).
    dtype: of the matmuls (the mixed-precision dtype; default: that of hidden and weight), softmax in fp32."""
    if hidden.shape[0] == 0:
        return (hidden.sum() * 0).float()  # keeps the graph (DDP expects every trained weight to get a grad)
    with torch.profiler.record_function("chatforge::lm_head"):  # a named range for bench/train_profile.py
        return _LinearCrossEntropy.apply(hidden, weight, bias, targets, dtype or _common_dtype(hidden, weight))


@torch.no_grad()
def token_scores(hidden, weight, bias, targets, dtype: torch.dtype | None = None, accuracy: bool = True):
    """Per-row loss (N,) fp32 and whether the arg-max is the target (N,) bool (None with accuracy=False: an
    arg-max over the vocabulary costs about as much as the softmax), chunk by chunk."""
    losses = hidden.new_zeros(hidden.shape[0], dtype=torch.float32)
    correct = torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device) if accuracy else None
    with torch.autocast(hidden.device.type, enabled=False):
        for s, e, _, logits in _Chunks(hidden, weight, bias, dtype or _common_dtype(hidden, weight)):
            if accuracy:
                correct[s:e] = logits.argmax(-1) == targets[s:e]
            losses[s:e] = _softmax_(logits, targets[s:e])
    return losses, correct


def _common_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    return torch.promote_types(hidden.dtype, weight.dtype)


class HeadBypass:
    """Calls a causal LM so that it returns its final hidden states (N, H) where it would return logits."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT
        head = base.get_output_embeddings()
        self.head = head if isinstance(head, torch.nn.Linear) else None

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.head.bias

    def __call__(self, model, **inputs):
        """model(**inputs).logits with the head as the identity: hidden states in place of logits."""
        saved = self.head.__dict__.get("forward")  # an instance-level forward (e.g. accelerate's hooks)
        self.head.forward = _identity
        try:
            return model(**inputs).logits
        finally:
            if saved is None:
                del self.head.forward
            else:
                self.head.forward = saved

    @torch.no_grad()
    def matches(self, model, device, dtype: torch.dtype | None = None) -> bool:
        """head(hidden) == the model's logits on a short input (so nothing happens after the head)?"""
        if self.head is None:
            return False
        ids = torch.arange(1, 9, device=device)[None] % self.weight.shape[0]  # (1, 8)
        was_training = model.training
        model.eval()
        try:
            ref = model(input_ids=ids, use_cache=False).logits[0].float()  # (8, V)
            hidden = self(model, input_ids=ids, use_cache=False)[0]  # (8, H)
            cd = dtype or _common_dtype(hidden, self.weight)
            mine = (hidden.to(cd) @ self.weight.to(cd).T).float()
            mine = mine + self.bias.float() if self.bias is not None else mine
        finally:
            model.train(was_training)
        if ref.shape != mine.shape:
            return False
        return bool((ref - mine).abs().max() <= 1e-2 * ref.abs().max() + 1e-4)


def _identity(x):
    return x


class _LinearTokenLosses(torch.autograd.Function):
    """Per-row cross entropy (N,) of a frozen head, fused like _LinearCrossEntropy: the gradient of each row's
    loss with respect to its hidden state, (softmax - one_hot) @ W, is computed chunk by chunk in the forward
    pass; backward() scales each row by its incoming gradient (DPO/KTO weigh every answer differently)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, cd):
        with torch.autocast(hidden.device.type, enabled=False):
            chunks = _Chunks(hidden, weight, bias, cd)
            grad_h = hidden.new_empty(hidden.shape, dtype=cd)
            losses = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
            for s, e, _, logits in chunks:
                losses[s:e] = _softmax_(logits, targets[s:e])
                logits[torch.arange(e - s, device=logits.device), targets[s:e]] -= 1
                d = logits if logits is chunks.low[:e - s] else chunks.low[:e - s].copy_(logits)
                torch.mm(d, chunks.w, out=grad_h[s:e])  # (c, H)
        ctx.save_for_backward(grad_h)
        ctx.dtype = hidden.dtype
        return losses

    @staticmethod
    def backward(ctx, grad):
        (grad_h,) = ctx.saved_tensors
        return (grad_h * grad[:, None].to(grad_h.dtype)).to(ctx.dtype), None, None, None, None


def linear_token_losses(hidden, weight, bias, targets, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-row cross_entropy(hidden @ weight.T + bias, targets), (N,) fp32, differentiable in hidden.
    Fused (no (N, V) logits kept) when the head is frozen (LoRA); a trained head takes the plain path."""
    cd = dtype or _common_dtype(hidden, weight)
    if weight.requires_grad or (bias is not None and bias.requires_grad) or hidden.shape[0] == 0:
        logits = (hidden.to(cd) @ weight.to(cd).T).float()
        logits = logits + bias.float() if bias is not None else logits
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if not hidden.requires_grad:
        return token_scores(hidden, weight, bias, targets, cd, accuracy=False)[0]
    return _LinearTokenLosses.apply(hidden, weight, bias, targets, cd)
