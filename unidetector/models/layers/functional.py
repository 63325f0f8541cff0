"""Small functional helpers shared by several heads."""
import jittor as jt


def l2_normalize(x: jt.Var, dim: int = 1, eps: float = 1e-12) -> jt.Var:
    """``F.normalize(x, p=2, dim=dim)``: ``x / max(||x||_2, eps)``; zero vectors stay zero.

    The clamp is taken on the squared norm (``sqrt(max(s, eps²)) == max(sqrt(s), eps)``) so that
    all-zero vectors (e.g. after a ReLU) get a finite gradient.
    """
    return x / jt.sqrt(jt.maximum((x * x).sum(dim=dim, keepdims=True), eps * eps))
