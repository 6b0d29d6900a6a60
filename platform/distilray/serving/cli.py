"""``distilray serve``: the transcription endpoint on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import os

from distilray.cli_common import add_config_arguments


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve POST /v1/audio/transcriptions on the embedded Ray (Ctrl-C stops)",
        description=(
            "Start the OpenAI-style transcription endpoint locally. --config takes a "
            "YAML of app args (the `args:` block of serve_config.yaml); KEY=VALUE "
            "overrides any of them, e.g. limits.max_audio_s=600. For a cluster use "
            "`serve deploy serve_config.yaml`."
        ),
    )
    parser.add_argument("--teacher", help="teacher model (default: tiny.en)")
    parser.add_argument("--assistant", help="student model folder/URI for speculative decoding")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default 8000)")
    parser.add_argument(
        "--cpus", type=float, default=None, help="CPUs for the model replica (default: all cores)"
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distilray.config import load_config
    from distilray.serving.config import ServeArgs
    from distilray.serving.local import serve_forever

    overrides = list(args.overrides)
    if args.teacher:
        overrides.append(f"teacher={args.teacher}")
    if args.assistant:
        overrides.append(f"assistant={args.assistant}")
    cpus = args.cpus or float(os.cpu_count() or 1)
    config = load_config(ServeArgs, args.config, overrides)
    if config.torch_threads is None:
        config.torch_threads = max(1, round(cpus))
    serve_forever(config, args.host, args.port, model_cpus=cpus)
    return 0
