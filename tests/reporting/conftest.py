# Reports use the same tiny trained model and environment as the synthesis tests.
from tests.synthesis.conftest import _env, checkpoint, model  # noqa: F401
