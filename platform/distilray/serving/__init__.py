"""Ray Serve transcription endpoint in the OpenAI convention.

``config`` (the typed app arguments), ``formats`` (json/text/srt/vtt/verbose_json),
``errors`` (OpenAI-shaped JSON errors), ``validation`` (form fields and audio
limits), ``model`` (the batched Whisper deployment), ``app`` (the FastAPI ingress
and the app builder ``build_app``), ``deploy_config`` (strict checks of
``serve_config.yaml``), ``local`` (serving on the embedded Ray) and ``cli``
(``distilray serve``). Nothing here imports torch or Ray at import time except
``model`` and ``app``.
"""
