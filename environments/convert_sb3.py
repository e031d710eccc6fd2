"""A Stable-Baselines3 model trained on ``agora/Market-v0``, as an Agora policy file.

    python -m environments.convert_sb3 MODEL.zip OUT.npz

reads the model's deterministic actor and writes the policy-file format of
``docs/reference/policy-files.md``, which a scenario's negotiators load with
``core = "OUT.npz"`` and :class:`agents.shade_policy.ShadePolicy` evaluates with numpy.

What is read:

* PPO (and A2C), ``MlpPolicy``: the ``Linear`` layers of ``mlp_extractor.policy_net`` and
  ``action_net``, whose output is the Gaussian's mean; Stable-Baselines3's deterministic
  ``predict`` clips the mean to the action box, so the file's squash is ``clip``.
* SAC, ``MlpPolicy``: ``actor.latent_pi`` and ``actor.mu``; the deterministic action is
  ``tanh`` of the mean, so the file's squash is ``tanh``.

Hidden activations must all be ``Tanh`` (PPO's default) or all ``ReLU`` (SAC's). The model must
have been trained on Market-v0's spaces (observation ``Box(-1, 1, (4,))``, action
``Box(-1, 1, (1,))``) without observation normalisation outside the model (``VecNormalize``
statistics live in a separate file, which the policy file cannot hold). Anything else is refused
with a message naming what differs. Needs ``stable-baselines3`` (``pip install
stable-baselines3==2.9.2``).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.shade_policy import OBS_DIM, save_policy_file
from environments.market import action_space, observation_space

ACTIVATION_NAMES = {"Tanh": "tanh", "ReLU": "relu"}


def load_model(path: Path) -> Any:
    """A PPO, A2C or SAC model read from ``path`` (its policy class decides which), on the CPU."""
    try:
        from stable_baselines3 import A2C, PPO, SAC
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError as exc:
        raise ValueError(
            "reading a Stable-Baselines3 model needs stable-baselines3: pip install "
            "stable-baselines3==2.9.2"
        ) from exc
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file (expected a model saved with model.save())")
    try:
        data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path}: not a Stable-Baselines3 model file ({exc})") from None
    if data is None or "policy_class" not in data:
        raise ValueError(f"{path}: not a Stable-Baselines3 model file (no policy_class in it)")
    name = getattr(data["policy_class"], "__name__", str(data["policy_class"]))
    algorithms = {"ActorCriticPolicy": PPO, "SACPolicy": SAC}
    algorithm = algorithms.get(name)
    if algorithm is None:
        raise ValueError(f"{path}: policy class {name}: expected a PPO, A2C or SAC MlpPolicy")
    if algorithm is PPO and "n_epochs" not in data:
        algorithm = A2C  # the same policy class; A2C saves no PPO epochs
    return algorithm.load(path, device="cpu")


def _linear_stack(modules: Any, where: str) -> tuple[list[Any], str | None]:
    """The ``Linear`` layers of a ``Sequential`` and the one activation between them."""
    import torch

    linears, activations = [], set()
    for module in modules:
        if isinstance(module, torch.nn.Linear):
            linears.append(module)
        elif type(module).__name__ in ACTIVATION_NAMES:
            activations.add(ACTIVATION_NAMES[type(module).__name__])
        else:
            raise ValueError(
                f"{where}: layer {type(module).__name__} is not supported; expected "
                f"Linear layers with one of {sorted(ACTIVATION_NAMES)}"
            )
    if len(activations) > 1:
        raise ValueError(f"{where}: mixes activations {sorted(activations)}; a policy file has one")
    return linears, activations.pop() if activations else None


def actor_of(
    model: Any,
) -> tuple[list[npt.NDArray[np.floating[Any]]], list[npt.NDArray[np.floating[Any]]], str, str]:
    """The deterministic actor of a PPO/A2C or SAC model: weights, biases, activation, squash."""
    _check_spaces(model)
    policy = model.policy
    if getattr(model, "use_sde", False):
        raise ValueError(
            "models trained with gSDE (use_sde=True) are not supported; train without it"
        )
    if hasattr(policy, "mlp_extractor"):  # PPO and A2C: ActorCriticPolicy
        _check_flatten(getattr(policy, "pi_features_extractor", policy.features_extractor))
        hidden, activation = _linear_stack(
            policy.mlp_extractor.policy_net, "mlp_extractor.policy_net"
        )
        last, squash = policy.action_net, "tanh" if policy.squash_output else "clip"
    elif hasattr(policy, "actor") and hasattr(policy.actor, "latent_pi"):  # SAC
        _check_flatten(policy.actor.features_extractor)
        hidden, activation = _linear_stack(policy.actor.latent_pi, "actor.latent_pi")
        last, squash = policy.actor.mu, "tanh"
    else:
        raise ValueError(f"policy {type(policy).__name__}: expected a PPO, A2C or SAC MlpPolicy")
    layers = [*hidden, last]
    weights = [m.weight.detach().cpu().numpy().copy() for m in layers]
    biases = [m.bias.detach().cpu().numpy().copy() for m in layers]
    assert weights[0].shape[1] == OBS_DIM and weights[-1].shape[0] == 1
    return weights, biases, activation or "tanh", squash


def _check_spaces(model: Any) -> None:
    obs, act = model.observation_space, model.action_space
    want_obs, want_act = observation_space(), action_space()
    if getattr(obs, "shape", None) != want_obs.shape:
        raise ValueError(f"the model observes {obs}; agora/Market-v0 gives {want_obs}")
    if (
        getattr(act, "shape", None) != want_act.shape
        or not np.array_equal(act.low, want_act.low)
        or not np.array_equal(act.high, want_act.high)
    ):
        raise ValueError(
            f"the model acts in {act}; agora/Market-v0's action space is {want_act}: "
            "train on the current agora/Market-v0"
        )


def _check_flatten(extractor: Any) -> None:
    if type(extractor).__name__ != "FlattenExtractor":
        raise ValueError(
            f"features extractor {type(extractor).__name__}: only MlpPolicy's "
            "FlattenExtractor (no parameters) can be converted"
        )


def convert(model: Any, out: Path) -> Path:
    """Write ``model``'s actor (a model object, or the path of a saved ``.zip``) to the policy
    file ``out``; returns ``out``."""
    if isinstance(model, (str, Path)):
        model = load_model(Path(model))
    import stable_baselines3  # installed: a model exists

    weights, biases, activation, squash = actor_of(model)
    source = (
        f"stable-baselines3 {stable_baselines3.__version__} {type(model).__name__} "
        f"({type(model.policy).__name__})"
    )
    save_policy_file(Path(out), weights, biases, activation, squash, source)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m environments.convert_sb3 MODEL.zip OUT.npz``: 0 when written, 2 with a
    one-line reason otherwise."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(
            "usage: python -m environments.convert_sb3 MODEL.zip OUT.npz\n"
            "Writes a Stable-Baselines3 PPO/A2C/SAC model trained on agora/Market-v0 as an "
            "Agora policy file (docs/reference/policy-files.md).",
            file=sys.stderr,
        )
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        out = convert(Path(args[0]), Path(args[1]))
    except (ValueError, OSError) as exc:
        print(f"convert_sb3: {args[0]}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
