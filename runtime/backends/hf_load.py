"""Loading a local model folder with transformers, every fault of the folder a TtclRuntimeError.

`from_pretrained` builds the model that config.json describes and then fills
it from the safetensors file. Where the two disagree (a config edited after
the weights were saved) transformers raises a plain RuntimeError after
printing a table of every mismatched tensor; where the weights lack a tensor
it fills it with random numbers and goes on. Both are faults of the folder,
not of ttcl: they are read from the loading info and refused in one line
(exit 2), and transformers' own report is kept off stderr. A folder without
a tokenizer is refused too (`load_tokenizer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from ttcl.compiler.tokenizer_facts import SAVE_TOKENIZER, tokenizer_problem
from ttcl.errors import TtclRuntimeError

# what from_pretrained raises for a folder it cannot read (a corrupt weights file: exit 70, QA pass)
LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, SafetensorError)
_PROBE = "1 + 1 = 2"  # any tokenizer that can encode a prompt makes at least one token of it


def load_tokenizer(path: Path, failed: str) -> Any:
    """The folder's tokenizer, refused (`failed: why`) where it has none or it encodes text to nothing.

    A folder without tokenizer files loads: transformers builds a tokenizer with an empty vocabulary
    from config.json, and every prompt is then empty (QA pass: each item failed, exit 0). `ttcl
    check` refuses the missing files too (`tokenizer_problem`); an empty vocabulary that only
    loading shows is refused here."""
    from transformers import AutoTokenizer

    why = tokenizer_problem(path)
    if why is not None:
        raise TtclRuntimeError(f"{failed}: {why}")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except LOAD_ERRORS as e:
        raise TtclRuntimeError(f"{failed}: {e}") from e
    if not tok.vocab_size:
        raise TtclRuntimeError(f"{failed}: its tokenizer has an empty vocabulary: {SAVE_TOKENIZER}")
    if not tok(_PROBE, add_special_tokens=False, verbose=False)["input_ids"]:
        raise TtclRuntimeError(f"{failed}: its tokenizer encodes text ({_PROBE!r}) to no tokens: {SAVE_TOKENIZER}")
    return tok


def load_weights(auto_cls: Any, path: Path, what: str = "model") -> tuple[Any, list[str]]:
    """`auto_cls.from_pretrained(path)` (local safetensors only), and the tensors its weights lack (sorted).

    Weights whose shapes do not match config.json are refused (TtclRuntimeError), naming one tensor
    with both shapes, and so are weights with tensors the model has no place for. What a missing
    tensor means is the caller's to say (a causal LM refuses it with `missing_message`, a verifier
    names the head it lacks), and where tensors are missing, extra ones are left to that message
    (a causal LM's lm_head beside the missing head of a reward model)."""
    from transformers.utils import logging as hf_logging

    before, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its LOAD REPORT table: the error below says what is wrong, in one line
    hf_logging.disable_progress_bar()  # a run's own bar is the only one on stderr (a verifier's load showed one
    try:  # when the policy was a server, which loads nothing here)
        model, info = auto_cls.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                               output_loading_info=True, ignore_mismatched_sizes=True)
    except LOAD_ERRORS as e:
        raise TtclRuntimeError(f"cannot load {what} from {str(path)!r}: {e}") from e
    finally:
        hf_logging.set_verbosity(before)
        if bar:
            hf_logging.enable_progress_bar()
    mismatched = list(info.get("mismatched_keys") or [])
    if mismatched:
        order = {name: k for k, (name, _) in enumerate(model.named_parameters())}
        key, in_file, by_config = min(mismatched, key=lambda m: (order.get(m[0], len(order)), m[0]))
        raise TtclRuntimeError(
            f"cannot load {what} from {str(path)!r}: its weights do not match config.json (e.g. {key} is "
            f"{_shape(in_file)} in the weights, {_shape(by_config)} by the config; {len(mismatched)} tensors differ)")
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    if unexpected and not missing:  # more layers in the file than config.json names: the run would use fewer
        raise TtclRuntimeError(
            f"cannot load {what} from {str(path)!r}: its weights do not match config.json (they hold "
            f"{_some(unexpected)}, which the model it describes has no place for)")
    return model, missing


def missing_message(path: Path, missing: list[str], model: Any, what: str = "model") -> str:
    """Why weights that lack tensors of the model config.json describes are refused."""
    archs = ", ".join(getattr(model.config, "architectures", None) or [type(model).__name__])
    return (f"cannot load {what} from {str(path)!r}: its weights have no {_some(missing)}, which config.json "
            f"({archs}) describes; transformers would fill them with random numbers")


def _some(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} and {len(keys) - 1} more tensors"


def _shape(shape: Any) -> str:
    return "x".join(str(int(n)) for n in shape) or "a scalar"
