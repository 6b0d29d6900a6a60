"""The teacher on CTranslate2: which engine labels, and the actor that labels with it.

:class:`CT2TeacherLabeller` is :class:`~distilray.labelling.teacher.TeacherLabeller`
with the encoder pass and greedy decoding run by CTranslate2 (its decoder is a
:class:`distilray.engines.ct2_decoder.CT2Decoder`); it writes the same row schema.
The stored label starts with the prompt the decoder reports (``Decoded.prompts``),
and the label sequence (prompt + generated + end of text) and the confidence come
from the same code as the transformers actor's: ``avg_logprob`` and
``no_speech_prob`` from one teacher-forced pass of the transformers decoder over
CTranslate2's encoder output (CTranslate2 only returns scores after its token
filters, which are not Whisper's definition), ``compression_ratio`` from the text.
At float32 they equal the transformers actor's to rounding (about 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

from distilray.errors import ConfigError
from distilray.inference.confidence import no_speech_token_id
from distilray.inference.prompt import end_of_text
from distilray.labelling.teacher import TeacherLabeller

ENGINES = ("transformers", "ctranslate2")


@dataclass(frozen=True)
class EngineChoice:
    """The engine that labels, and (CTranslate2) the compute type it runs in."""

    engine: str  # "transformers" or "ctranslate2"
    compute_type: str | None  # CTranslate2 compute type; None for transformers


def choose_engine(
    engine: str, compute_type: str, device: str, encoder_cache_dir: str | None = None
) -> EngineChoice:
    """Resolve ``engine`` / ``compute_type`` (``auto`` included) for actors on ``device``.

    The rule (stated in the README): ``auto`` is CTranslate2 at float32 on CPU actors
    when ``ctranslate2`` is installed (its labels equal transformers' there, and it is
    faster); on GPU actors it stays transformers, whose bfloat16 labels CTranslate2's
    reduced precisions do not reproduce. An explicit ``compute_type`` selects
    CTranslate2.
    """
    from distilray.engines.ct2 import resolve_compute_type

    if engine == "auto":
        explicit = compute_type != "auto"
        engine = "ctranslate2" if (explicit or device == "cpu") and _has_ct2() else "transformers"
        if explicit and engine == "transformers":
            raise ConfigError(
                "compute_type needs the CTranslate2 engine: pip install 'distilray[ct2]'"
            )
    if engine == "transformers":
        return EngineChoice("transformers", None)
    if engine != "ctranslate2":
        raise ConfigError(f"unknown engine {engine!r}: use auto, {' or '.join(ENGINES)}")
    from distilray.models.ct2_export import require_ctranslate2

    require_ctranslate2()
    chosen = resolve_compute_type(compute_type, device)
    if encoder_cache_dir and chosen != "float32":
        raise ConfigError(
            f"encoder_cache_dir keeps the teacher's float32 encoder outputs, but the "
            f"CTranslate2 engine computes in {chosen}: set compute_type=float32 or "
            "engine=transformers"
        )
    return EngineChoice("ctranslate2", chosen)


def _has_ct2() -> bool:
    import importlib.util

    return importlib.util.find_spec("ctranslate2") is not None


class CT2TeacherLabeller(TeacherLabeller):
    """Ray Data actor: the transformers labeller's rows, decoded by CTranslate2."""

    def __init__(
        self,
        teacher: str,
        device: str,
        compute_type: str,
        max_new_tokens: int,
        return_timestamps: bool,
        language: str | None,
        task: str | None,
        threads: int = 1,
        progress=None,
        encoder_cache_dir: str | None = None,
    ) -> None:
        import torch

        from distilray.engines.ct2 import CT2Whisper
        from distilray.engines.ct2_decoder import CT2Decoder
        from distilray.models import load_whisper

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.engine = CT2Whisper.load(
            teacher, device=device, compute_type=compute_type, threads=threads
        )
        # The transformers teacher gives the tokenizer and decoding settings, and its
        # decoder scores the labels; CTranslate2 encodes, so its encoder is dropped.
        self.model, self.processor = load_whisper(teacher, device=device, dtype="float32")
        self.model.model.encoder = None
        config = self.model.generation_config
        self.eos = end_of_text(config)
        self.decoder = CT2Decoder(
            self.engine,
            self.model,
            self.processor,
            max_new_tokens=max_new_tokens,
            language=language,
            task=task,
        )
        self.return_timestamps = return_timestamps
        self.store = None
        if encoder_cache_dir:
            from distilray.models.encoder_store import EncoderStore, encoder_namespace

            # float32 only (choose_engine): the same encoder as the transformers teacher's
            self.store = EncoderStore(encoder_cache_dir, encoder_namespace(teacher, "float32"))
        self.suppress = list(config.suppress_tokens or [])
        self.no_speech_id = no_speech_token_id(config)
        self.progress = progress
