"""Feature vectors of whole 3D scans, for FID and MMD between real and synthetic sets.

MONAI's usual 3D feature networks download their weights, which medgen never does. Two sources:

- **shipped** (default): :class:`~medgen.models.features.FeatureNet3d`, a small 3D CNN (0.88 M
  parameters, 128 features) trained *here*, self-supervised, on medgen's built-in simulated brain cohort by
  ``scripts/train_features.py`` (pretext tasks: which 90-degree rotation was applied, and which
  image corruption -- none, noise, blur, bias field, Gibbs ringing, gamma -- so the features see
  both anatomy and image quality). It is *not* an ImageNet/Inception network: FID values computed
  with it are comparable only with each other, never with published FIDs. It ships as the model
  folder ``features_ssl3d`` (``medgen.load_model("features_ssl3d")``); its card names it
  ``medgen-ssl3d-v1`` and records its training.
- **local file**: a MedicalNet (3D ResNet-10/18/34/50, ``.pth``) or RadImageNet-style 2D ResNet
  weights file the user already has. The architecture is read from the state-dict keys; 2D networks
  see 16 axial slices and average their features.

Every scan is preprocessed the same way: channel 0, intensities mapped by the scan's own 0.5-99.5
percentiles to [0, 1] (MedicalNet: z-score over non-zero voxels), resized to the network's input
grid. :attr:`FeatureExtractor.name` says which features a number or figure used.

>>> extractor = load_feature_extractor()                     # doctest: +SKIP
>>> real, synth = extractor(real_scans), extractor(synthetic_scans)   # (N, 128) each
>>> fid(real, synth)                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medgen.errors import ConfigError, DataError
from medgen.intensity import robust_range

SHIPPED_NAME = "features_ssl3d"
"""The shipped feature network's model name (:func:`medgen.load_model` loads it)."""
_STRIP_PREFIXES = ("module.", "backbone.", "model.", "encoder.", "net.")


def normalize_percentile(volume: torch.Tensor, low: float = 0.5, high: float = 99.5) -> torch.Tensor:
    """Map ``volume`` (any shape) so its ``low``/``high`` percentiles become 0/1 (clipped to [0, 1])."""
    v = volume.float()
    flat = v.flatten()
    if flat.numel() > 2_000_000:  # a strided sample keeps this fast on whole-head scans
        flat = flat[:: flat.numel() // 2_000_000 + 1]
    lo, hi = robust_range(flat, low, high)
    return ((v - lo) / max(hi - lo, 1e-6)).clamp(0.0, 1.0)


def normalize_zscore(volume: torch.Tensor) -> torch.Tensor:
    """MedicalNet's normalisation: zero mean, unit variance over the non-zero voxels."""
    v = volume.float()
    nz = v[v != 0]
    if nz.numel() < 2:
        return v
    return (v - nz.mean()) / nz.std().clamp_min(1e-6)


def prepare(scan: torch.Tensor, size: Sequence[int], norm: str = "percentile") -> torch.Tensor:
    """Channel 0 of a ``(C, X, Y, Z)`` scan, normalised and resized (trilinear) to ``(1, *size)``."""
    vol = scan.as_tensor() if hasattr(scan, "as_tensor") else torch.as_tensor(scan)
    vol = vol.detach().cpu().float()
    vol = vol[0] if vol.ndim == 4 else vol
    if vol.ndim != 3:
        raise DataError(f"feature extraction needs a 3D scan (C, X, Y, Z), got shape {tuple(scan.shape)}")
    vol = normalize_zscore(vol) if norm == "zscore" else normalize_percentile(vol)
    return F.interpolate(vol[None, None], size=tuple(size), mode="trilinear", align_corners=False)[0]


@dataclass
class FeatureExtractor:
    """A network plus its preprocessing; call it on scans to get ``(N, F)`` float64 features.

    Attributes:
        network: maps ``(B, 1, *input_size)`` (3D) to ``(B, F)``; for ``slices > 0`` a 2D network
            mapping ``(B, C, H, W)`` slices to ``(B, F)``.
        input_size: the grid scans are resized to (3 values; for 2D, the slice size is the first two).
        norm: ``"percentile"`` or ``"zscore"``.
        name: human-readable description (what a figure's features were).
        slices: 0 for a 3D network; else the number of axial slices fed to a 2D network.
        in_channels: input channels of the network (a grey slice is repeated to fill them).
    """

    network: nn.Module
    input_size: tuple[int, int, int]
    norm: str
    name: str
    slices: int = 0
    in_channels: int = 1

    @torch.no_grad()
    def __call__(self, scans: Sequence[torch.Tensor], batch_size: int = 4) -> torch.Tensor:
        """Features of each ``(C, X, Y, Z)`` scan: ``(N, F)`` float64 tensor."""
        if len(scans) == 0:
            raise DataError("no scans to extract features from")
        self.network.eval()
        out = []
        for start in range(0, len(scans), batch_size):
            batch = torch.stack([prepare(s, self.input_size, self.norm) for s in scans[start : start + batch_size]])
            out.append(self._forward(batch).double())
        return torch.cat(out)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.slices:
            return self.network(batch)
        z = batch.shape[-1]
        index = torch.linspace(z * 0.2, z * 0.8, self.slices).long()
        feats = []
        for b in batch:
            planes = b[0, :, :, index].permute(2, 0, 1)[:, None]  # (S, 1, X, Y)
            planes = planes.repeat(1, self.in_channels, 1, 1)
            feats.append(self.network(planes).mean(0))
        return torch.stack(feats)


def fid(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    """Fréchet distance between two feature sets ``(N, F)`` and ``(M, F)`` (MONAI's :class:`FIDMetric`).

    0 for identical sets; grows with the squared distance of the means plus the covariance mismatch.
    With fewer samples than features the covariances are singular; the value is still usable for
    comparing methods on the same sample sizes, but is biased upward for small N.
    """
    from monai.metrics import FIDMetric

    if real.shape[0] < 2 or synthetic.shape[0] < 2:
        raise DataError("FID needs at least 2 scans in each set")
    return float(FIDMetric()(synthetic.double(), real.double()).clamp_min(0.0))


def mmd(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    """Squared maximum mean discrepancy (Gaussian kernel) between feature sets ``(N, F)`` and ``(M, F)``.

    Features are standardised with the real set's mean and sd; the kernel width is the median
    pairwise distance of the pooled sets (Gretton et al. 2012, biased V-statistic). 0 for identical
    sets, at most 2; unlike MONAI's ``MMDMetric`` (linear kernel: compares means only) it also sees
    differences in spread and shape. Set sizes may differ.
    """
    if real.shape[0] < 2 or synthetic.shape[0] < 2:
        raise DataError("MMD needs at least 2 scans in each set")
    mu, sd = real.mean(0), real.std(0).clamp_min(1e-8)
    a, b = ((real - mu) / sd).double(), ((synthetic - mu) / sd).double()
    d = torch.cdist(torch.cat([a, b]), torch.cat([a, b])) ** 2
    width = d[d > 0].median() if (d > 0).any() else torch.tensor(1.0, dtype=torch.float64)
    k = torch.exp(-d / width)
    n = len(a)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


def load_feature_extractor(path: str | Path | None = None) -> FeatureExtractor:
    """The shipped extractor (``path=None``), or one built from a local weights file.

    Args:
        path: ``None`` for medgen's self-supervised network; else a MedicalNet ``.pth``/``.pt`` or a
            ``.safetensors`` file holding a (3D or 2D) ResNet state dict, optionally under
            ``"state_dict"`` and with ``module.``/``backbone.`` prefixes. Nothing is downloaded.

    Raises:
        DataError: the shipped model folder is missing or broken (``scripts/train_features.py`` rebuilds
            it), or the file cannot be read or is not a ResNet state dict.
    """
    if path is None:
        return _load_shipped()
    return _load_resnet(Path(path))


def _load_shipped() -> FeatureExtractor:
    from medgen.models.hub import load_network

    model = load_network(SHIPPED_NAME, "features")
    size = tuple(int(s) for s in model.config["input_size"])
    name = f"{model.card.get('name', SHIPPED_NAME)} (self-supervised on medgen's built-in cohort)"
    return FeatureExtractor(model.network, size, "percentile", name)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: no such feature-network weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise DataError(f"{path}: cannot read weights ({type(err).__name__}: {str(err)[:120]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict of tensors")
    clean = {}
    for key, value in state.items():
        for prefix in _STRIP_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        clean[key] = value
    return clean


def _load_resnet(path: Path) -> FeatureExtractor:
    """Rebuild a MONAI ResNet (MedicalNet / torchvision key layout) from the keys of a state dict."""
    from monai.networks.nets import ResNet

    state = _read_state_dict(path)
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        raise DataError(f"{path}: not a ResNet state dict (no conv1.weight / layer1.0.conv1.weight)")
    conv1 = state["conv1.weight"]
    dims = conv1.ndim - 2
    bottleneck = "layer1.0.conv3.weight" in state
    layers = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    downsample = any(k.startswith("layer2.0.downsample.0.") for k in state)
    net = ResNet(
        "bottleneck" if bottleneck else "basic", layers, [64, 128, 256, 512], spatial_dims=dims,
        n_input_channels=int(conv1.shape[1]), conv1_t_size=tuple(conv1.shape[2:]), conv1_t_stride=2,
        shortcut_type="B" if downsample else "A", feed_forward=False,
        bias_downsample="layer2.0.downsample.0.bias" in state,
    )
    wanted = net.state_dict()
    usable = {k: v for k, v in state.items() if k in wanted and wanted[k].shape == v.shape}
    missing = [k for k in wanted if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        raise DataError(f"{path}: ResNet weights incomplete or mismatched ({len(missing)} tensors, e.g. {missing[0]})")
    net.load_state_dict(usable, strict=False)
    depth = {(1, 1, 1, 1): 10, (2, 2, 2, 2): 18, (3, 4, 6, 3): 34 if not bottleneck else 50}.get(tuple(layers), 0)
    kind = f"ResNet-{depth or sum(layers)}" + (" 2D" if dims == 2 else " 3D")
    if dims == 3:
        return FeatureExtractor(net.eval(), (64, 64, 64), "zscore", f"{kind} from {path.name} (MedicalNet-style)")
    if dims != 2:
        raise ConfigError(f"{path}: {dims}D ResNet is not supported (need 2D or 3D)")
    return FeatureExtractor(
        net.eval(), (224, 224, 64), "percentile", f"{kind} from {path.name} (RadImageNet-style, 16 axial slices)",
        slices=16, in_channels=int(conv1.shape[1]),
    )
