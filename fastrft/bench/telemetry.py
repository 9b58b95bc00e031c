"""GPU telemetry over a timed region, through NVML (nvidia-ml-py): power, energy, clocks,
utilisation, memory. Off NVIDIA GPUs every reading is None and nothing runs.

A background thread samples every ``interval_s``; energy comes from the driver's cumulative
counter where the GPU has one (Volta and later), else from mean power x time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Telemetry:
    mean_power_w: float | None = None
    energy_j: float | None = None
    sm_clock_mhz: float | None = None
    utilization_pct: float | None = None
    memory_used_gib: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _handle(pynvml: Any, device: torch.device) -> Any:
    """The NVML handle of a torch CUDA device (matched by PCI bus id where torch gives it,
    since CUDA_VISIBLE_DEVICES renumbers devices for CUDA but not for NVML)."""
    props = torch.cuda.get_device_properties(device)
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        domain = getattr(props, "pci_domain_id", 0)
        device_id = getattr(props, "pci_device_id", 0)
        return pynvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{device_id:02x}.0")
    return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)


class TelemetrySampler:
    """``with TelemetrySampler(device) as s: ...`` then ``s.result``.

    Samples are taken at entry, every ``interval_s`` and at exit, so even a short region has
    two. Mean power is energy over time where the GPU has the energy counter: NVML's power
    reading is itself a one-second average on recent GPUs, which lags a short region."""

    def __init__(self, device: torch.device, interval_s: float = 0.05):
        self.device, self.interval_s = device, interval_s
        self.result = Telemetry()
        self._nvml: Any = None
        self._samples: list[tuple[float | None, ...]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TelemetrySampler:
        if self.device.type != "cuda":
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = _handle(pynvml, self.device)
        except Exception:  # no NVML library or not an NVIDIA GPU: readings stay None
            return self
        self._nvml = pynvml
        self._energy0 = self._energy_mj()
        self._t0 = time.perf_counter()
        self._take_sample()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._nvml is None:
            return
        seconds = time.perf_counter() - self._t0
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._take_sample()
        energy1 = self._energy_mj()
        power, clock, util, mem = (_mean(column) for column in zip(*self._samples, strict=True))
        energy = None
        if energy1 is not None and self._energy0 is not None:
            energy = (energy1 - self._energy0) / 1e3
            power = energy / seconds if seconds > 0 else power
        elif power is not None:
            energy = power * seconds
        self.result = Telemetry(power, energy, clock, util, mem)
        self._nvml.nvmlShutdown()

    def _energy_mj(self) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:  # older GPUs have no energy counter
            return None

    def _take_sample(self) -> None:
        n, h = self._nvml, self._handle
        self._samples.append(
            (
                _reading(lambda: n.nvmlDeviceGetPowerUsage(h) / 1e3),
                _reading(lambda: float(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM))),
                _reading(lambda: float(n.nvmlDeviceGetUtilizationRates(h).gpu)),
                _reading(lambda: n.nvmlDeviceGetMemoryInfo(h).used / 2**30),
            )
        )

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take_sample()


def _reading(read: Callable[[], float]) -> float | None:
    """One NVML reading, or None where the GPU does not support it (under MIG, say), so one
    missing reading does not end the sampling."""
    try:
        return read()
    except Exception:
        return None


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
