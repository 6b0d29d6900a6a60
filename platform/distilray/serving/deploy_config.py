"""Strict checks of a Serve deploy config (``serve_config.yaml``).

``ServeDeploySchema.model_validate`` silently drops misspelt keys (a typo such as
``num_replica`` deploys with the default), and it neither imports the app nor
checks deployment names. :func:`check_serve_config` does all of that without
starting Ray: every key must be a field of Serve's schema models (recursively),
every ``import_path`` must resolve and build with its ``args``, and every
configured deployment must exist in the built app.
"""

from __future__ import annotations

import importlib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from distilray.config import format_validation_error, read_yaml
from distilray.errors import ConfigError, DistilrayError


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (through Optional/Union/Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of ``List[Model]`` (optionally inside Optional)."""
    origin = typing.get_origin(annotation)
    if origin in (list, typing.List):  # noqa: UP006
        return _model_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _list_item_model(arg)
            if found:
                return found
    return None


def unknown_keys(model: type[BaseModel], data: dict, where: str = "") -> list[str]:
    """Dotted paths of keys in ``data`` that ``model`` (recursively) does not define.

    Free-form dicts (``args``, ``runtime_env``, ``user_config``) are not descended
    into; ``args`` is checked by building the app.
    """
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    found = []
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        field = fields.get(key)
        if field is None:
            found.append(path)
            continue
        sub = _model_in(field.annotation)
        item = _list_item_model(field.annotation)
        if sub and isinstance(value, dict):
            found += unknown_keys(sub, value, path)
        elif item and isinstance(value, list):
            for i, element in enumerate(value):
                if isinstance(element, dict):
                    found += unknown_keys(item, element, f"{path}.{i}")
    return found


def import_builder(import_path: str) -> Any:
    """The object named by ``module.sub:attr`` (or ``module.sub.attr``)."""
    module_name, sep, attr = import_path.partition(":")
    if not sep:
        module_name, _, attr = import_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"import_path {import_path!r} does not resolve: {exc}") from None


def build_application(import_path: str, args: dict):
    """The Serve ``Application`` an ``import_path`` plus ``args`` produce."""
    from ray.serve import Application

    target = import_builder(import_path)
    if isinstance(target, Application):
        if args:
            raise ConfigError(f"{import_path} is a built app: it takes no args")
        return target
    if not callable(target):
        raise ConfigError(f"{import_path} is neither an app nor an app builder")
    app = target(args)
    if not isinstance(app, Application):
        raise ConfigError(f"{import_path} returned {type(app).__name__}, not a Serve Application")
    return app


def built_deployments(app, name: str) -> dict[str, Any]:
    """``{deployment name: Deployment}`` of ``app`` as Serve would deploy it."""
    from ray.serve._private.build_app import build_app

    return {d.name: d for d in build_app(app, name=name).deployments}


def check_serve_config(path: str | Path):
    """Validate ``path`` strictly; returns the parsed ``ServeDeploySchema``."""
    from ray.serve.schema import ServeDeploySchema

    data = read_yaml(path)
    typos = unknown_keys(ServeDeploySchema, data)
    if typos:
        raise ConfigError(f"{path}: unknown keys (check the spelling): {', '.join(typos)}")
    try:
        config = ServeDeploySchema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    for app in config.applications:
        _check_application(app, str(path))
    return config


def _check_application(app, source: str) -> None:
    from ray.serve.config import AutoscalingConfig

    deployments = built_deployments(build_application(app.import_path, app.args), app.name)
    for spec in app.deployments:
        if spec.name not in deployments:
            raise ConfigError(
                f"{source}: application {app.name!r} has no deployment {spec.name!r}; "
                f"it has {sorted(deployments)}"
            )
        # The schema keeps a plain dict here unchecked; Serve validates it only at deploy.
        if isinstance(spec.autoscaling_config, dict):
            try:
                AutoscalingConfig.model_validate(spec.autoscaling_config)
            except ValidationError as exc:
                where = f"{source}: {spec.name}.autoscaling_config"
                raise ConfigError(format_validation_error(exc, where)) from None
    _check_batching(app, deployments, source)


def deploy(path: str | Path, *, wait: bool = True) -> list[str]:
    """Check ``path`` strictly, then deploy it as ``serve deploy`` would; app names.

    Runs on the cluster (e.g. under ``ray job submit``); the apps keep running after
    this process exits. With ``wait``, returns once every app is RUNNING.
    """
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions

    from distilray.runtime import ensure_ray

    config = check_serve_config(path)
    ensure_ray()
    client = serve_api.serve_start(
        http_options=config.http_options.model_dump(),
        proxy_location=config.proxy_location,
        grpc_options=gRPCOptions(**config.grpc_options.model_dump()),
        global_logging_config=config.logging_config,
        controller_options=config.controller_options,
    )
    names = [app.name for app in config.applications]
    try:
        client.deploy_apps(config, _blocking=wait)
    except TimeoutError:
        raise DistilrayError(
            f"{', '.join(names)} not RUNNING yet (replicas may still be loading models or "
            "waiting for GPUs): watch `serve status`"
        ) from None
    return names


def _check_batching(app, deployments: dict, source: str) -> None:
    """A model replica must accept at least a full batch of requests at once."""
    from distilray.serving.config import ServeArgs
    from distilray.serving.model import MODEL_DEPLOYMENT

    if MODEL_DEPLOYMENT not in deployments:
        return
    batch = ServeArgs.model_validate(app.args).batching.max_batch_size
    spec = next((d for d in app.deployments if d.name == MODEL_DEPLOYMENT), None)
    configured = spec.model_dump(exclude_unset=True).get("max_ongoing_requests") if spec else None
    ongoing = configured or deployments[MODEL_DEPLOYMENT].max_ongoing_requests
    if ongoing < batch:
        raise ConfigError(
            f"{source}: {MODEL_DEPLOYMENT}.max_ongoing_requests ({ongoing}) is below "
            f"args.batching.max_batch_size ({batch}): batches could never fill"
        )
