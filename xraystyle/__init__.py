"""xraystyle: StarGAN v2 counterfactual chest X-rays."""

__version__ = "0.1.0"

# First, before any xraystyle module imports torch: libgomp reads its wait policy once, when torch
# loads it (xraystyle/runtime.py says why; the user's own setting is kept).
from .runtime import set_openmp_defaults as _set_openmp_defaults

_set_openmp_defaults()
