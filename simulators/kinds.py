"""Machine kinds: the process signals each kind of machine has, how they behave, how much
energy it draws, and which faults can show in which signals.

Every signal follows the same small physical model (see :mod:`simulators.signals`): a level set by
the machine's load (motor effort) and speed, the plant's daily ambient swing, and a slow sensor
drift, reached through a first-order lag (temperatures trail the load by minutes), plus sensor
noise. The figures are plausible for the machines named, not taken from a datasheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["KINDS", "FaultEffect", "MachineKind", "SignalSpec"]


@dataclass(frozen=True)
class SignalSpec:
    name: str
    unit: str
    base: float  # level with the machine powered but not moving
    load_gain: float = 0.0  # added at full load (running at rated speed)
    speed_gain: float = 0.0  # added at rated speed (0 when stopped)
    noise_sd: float = 0.0  # sensor noise, standard deviation
    tau_s: float = 0.0  # first-order lag: temperatures trail load by minutes
    daily_amp: float = 0.0  # daily ambient swing, peak at 14:00 local
    drift_per_day: float = 0.0  # slow sensor drift
    lo: float = float("-inf")  # physical limits (clip)
    hi: float = float("inf")


@dataclass(frozen=True)
class FaultEffect:
    """What a degradation fault does to a signal at full severity."""

    signal: str
    offset: float = 0.0  # added to the signal's level
    scale: float = 0.0  # relative change of the level (-0.3: 30 % lower)
    noise: float = 1.0  # multiplier on the noise


@dataclass(frozen=True)
class MachineKind:
    name: str
    signals: tuple[SignalSpec, ...]
    standby_kw: float  # off, controls powered
    idle_kw: float  # powered, not producing
    run_kw: float  # producing at rated speed
    faults: dict[str, tuple[FaultEffect, ...]] = field(default_factory=dict)
    micro_stops_per_hour: float = 6.0
    breakdowns_per_shift: float = 0.6
    reduced_speed_per_hour: float = 0.5
    reject_rate: float = 0.01
    setup_s: float = 90.0  # restart after a break or changeover

    def signal_names(self) -> list[str]:
        return [spec.name for spec in self.signals]


def _motor(
    current_idle: float, current_run: float, temp_rise: float, vibration: float
) -> tuple[SignalSpec, ...]:
    """The drive every machine has: motor current, motor temperature, vibration RMS."""
    return (
        SignalSpec(
            "motor_current",
            "A",
            current_idle,
            load_gain=current_run - current_idle,
            noise_sd=0.02 * current_run,
            lo=0,
        ),
        SignalSpec(
            "motor_temp",
            "degC",
            31.0,
            load_gain=temp_rise,
            noise_sd=0.15,
            tau_s=900,
            daily_amp=2.0,
            lo=-20,
            hi=150,
        ),
        SignalSpec("vibration", "mm/s", 0.35, speed_gain=vibration, noise_sd=0.06, lo=0, hi=50),
    )


_BEARING = (FaultEffect("vibration", offset=3.0, noise=2.0), FaultEffect("motor_temp", offset=14.0))

KINDS: dict[str, MachineKind] = {
    kind.name: kind
    for kind in (
        MachineKind(
            "filler",
            (
                SignalSpec(
                    "product_temp",
                    "degC",
                    4.2,
                    load_gain=0.3,
                    noise_sd=0.05,
                    tau_s=300,
                    daily_amp=0.3,
                    lo=-5,
                    hi=40,
                ),
                SignalSpec(
                    "fill_pressure", "bar", 0.2, load_gain=1.3, noise_sd=0.025, tau_s=5, lo=0, hi=10
                ),
                SignalSpec(
                    "fill_flow", "L/min", 0.0, speed_gain=118.0, noise_sd=1.2, tau_s=3, lo=0, hi=400
                ),
                SignalSpec(
                    "sterilant_temp",
                    "degC",
                    62.0,
                    load_gain=6.0,
                    noise_sd=0.2,
                    tau_s=240,
                    lo=0,
                    hi=120,
                ),
                *_motor(2.2, 15.0, 24.0, 2.1),
            ),
            standby_kw=1.2,
            idle_kw=9.0,
            run_kw=31.0,
            faults={
                "bearing_wear": _BEARING,
                "clogging": (
                    FaultEffect("fill_pressure", offset=0.55),
                    FaultEffect("fill_flow", scale=-0.3, noise=1.5),
                ),
                "heater_degradation": (FaultEffect("sterilant_temp", offset=-14.0, noise=1.5),),
            },
            micro_stops_per_hour=7.0,
            breakdowns_per_shift=0.7,
            reject_rate=0.012,
        ),
        MachineKind(
            "capper",
            (
                SignalSpec(
                    "cap_torque", "N.m", 0.1, speed_gain=2.35, noise_sd=0.05, tau_s=2, lo=0, hi=10
                ),
                SignalSpec(
                    "cap_air_pressure",
                    "bar",
                    5.6,
                    load_gain=-0.3,
                    noise_sd=0.04,
                    tau_s=10,
                    lo=0,
                    hi=10,
                ),
                *_motor(1.1, 6.5, 18.0, 1.8),
            ),
            standby_kw=0.4,
            idle_kw=2.0,
            run_kw=6.5,
            faults={"bearing_wear": _BEARING},
            micro_stops_per_hour=5.0,
            reject_rate=0.004,
        ),
        MachineKind(
            "labeler",
            (
                SignalSpec(
                    "label_tension", "N", 1.0, speed_gain=17.0, noise_sd=0.35, tau_s=2, lo=0, hi=60
                ),
                SignalSpec(
                    "glue_temp",
                    "degC",
                    148.0,
                    load_gain=6.0,
                    noise_sd=0.4,
                    tau_s=300,
                    daily_amp=0.5,
                    lo=0,
                    hi=220,
                ),
                *_motor(0.9, 4.8, 15.0, 1.5),
            ),
            standby_kw=0.6,
            idle_kw=3.5,
            run_kw=7.0,
            faults={
                "bearing_wear": _BEARING,
                "heater_degradation": (FaultEffect("glue_temp", offset=-18.0, noise=1.5),),
            },
            micro_stops_per_hour=4.0,
            reject_rate=0.003,
        ),
        MachineKind(
            "case_packer",
            (
                SignalSpec(
                    "air_pressure",
                    "bar",
                    6.3,
                    load_gain=-0.45,
                    noise_sd=0.05,
                    tau_s=20,
                    lo=0,
                    hi=10,
                ),
                *_motor(1.5, 9.0, 16.0, 2.6),
            ),
            standby_kw=0.5,
            idle_kw=2.5,
            run_kw=9.5,
            faults={"bearing_wear": _BEARING},
            micro_stops_per_hour=5.0,
            reject_rate=0.002,
        ),
        MachineKind(
            "weigher",
            (
                SignalSpec(
                    "bucket_weight", "g", 0.0, speed_gain=151.0, noise_sd=1.4, tau_s=1, lo=0, hi=400
                ),
                SignalSpec(
                    "hopper_level", "%", 62.0, load_gain=-8.0, noise_sd=1.5, tau_s=60, lo=0, hi=100
                ),
                *_motor(0.8, 4.0, 12.0, 1.2),
            ),
            standby_kw=0.3,
            idle_kw=1.5,
            run_kw=4.5,
            faults={"bearing_wear": _BEARING},
            micro_stops_per_hour=6.0,
            reject_rate=0.006,
        ),
        MachineKind(
            "bagger",
            (
                SignalSpec(
                    "seal_temp",
                    "degC",
                    172.0,
                    load_gain=-3.0,
                    noise_sd=0.45,
                    tau_s=120,
                    lo=0,
                    hi=260,
                ),
                SignalSpec(
                    "heater_power", "%", 32.0, load_gain=24.0, noise_sd=1.2, tau_s=30, lo=0, hi=100
                ),
                SignalSpec(
                    "film_tension", "N", 2.0, speed_gain=38.0, noise_sd=0.8, tau_s=2, lo=0, hi=120
                ),
                *_motor(1.8, 11.0, 20.0, 2.4),
            ),
            standby_kw=1.0,
            idle_kw=6.0,
            run_kw=12.0,
            faults={
                "bearing_wear": _BEARING,
                "heater_degradation": (
                    FaultEffect("seal_temp", offset=-16.0, noise=1.6),
                    FaultEffect("heater_power", offset=38.0),
                ),
            },
            micro_stops_per_hour=8.0,
            breakdowns_per_shift=0.8,
            reject_rate=0.015,
        ),
        MachineKind(
            "checkweigher",
            (
                SignalSpec(
                    "net_weight", "g", 0.0, speed_gain=150.6, noise_sd=1.1, tau_s=1, lo=0, hi=400
                ),
                SignalSpec(
                    "belt_speed", "m/min", 0.0, speed_gain=42.0, noise_sd=0.3, tau_s=3, lo=0, hi=120
                ),
                *_motor(0.5, 2.4, 9.0, 0.9),
            ),
            standby_kw=0.2,
            idle_kw=0.8,
            run_kw=2.0,
            faults={"bearing_wear": _BEARING},
            micro_stops_per_hour=2.0,
            reject_rate=0.008,
        ),
        MachineKind(
            "cnc",
            (
                SignalSpec(
                    "spindle_speed",
                    "rpm",
                    0.0,
                    speed_gain=12_000.0,
                    noise_sd=15.0,
                    tau_s=2,
                    lo=0,
                    hi=24_000,
                ),
                SignalSpec(
                    "spindle_load", "%", 2.0, speed_gain=52.0, noise_sd=3.0, tau_s=5, lo=0, hi=150
                ),
                SignalSpec(
                    "spindle_vibration",
                    "mm/s",
                    0.25,
                    speed_gain=1.7,
                    noise_sd=0.05,
                    tau_s=5,
                    lo=0,
                    hi=50,
                ),
                SignalSpec(
                    "spindle_temp",
                    "degC",
                    27.0,
                    load_gain=17.0,
                    noise_sd=0.12,
                    tau_s=1200,
                    daily_amp=1.5,
                    lo=-20,
                    hi=120,
                ),
                SignalSpec(
                    "coolant_temp",
                    "degC",
                    23.5,
                    load_gain=5.5,
                    noise_sd=0.1,
                    tau_s=1800,
                    daily_amp=1.8,
                    lo=0,
                    hi=60,
                ),
                SignalSpec(
                    "coolant_pressure",
                    "bar",
                    0.4,
                    speed_gain=38.0,
                    noise_sd=0.6,
                    tau_s=3,
                    lo=0,
                    hi=100,
                ),
                SignalSpec(
                    "coolant_flow",
                    "L/min",
                    0.0,
                    speed_gain=21.0,
                    noise_sd=0.4,
                    tau_s=3,
                    lo=0,
                    hi=80,
                ),
                SignalSpec("motor_current", "A", 4.0, load_gain=26.0, noise_sd=0.5, lo=0),
                SignalSpec(
                    "axis_load", "%", 1.0, speed_gain=34.0, noise_sd=2.5, tau_s=1, lo=0, hi=150
                ),
            ),
            standby_kw=1.5,
            idle_kw=5.0,
            run_kw=22.0,
            faults={
                "bearing_wear": (
                    FaultEffect("spindle_vibration", offset=2.4, noise=2.0),
                    FaultEffect("spindle_temp", offset=11.0),
                ),
                "clogging": (
                    FaultEffect("coolant_pressure", offset=14.0),
                    FaultEffect("coolant_flow", scale=-0.35, noise=1.5),
                ),
            },
            micro_stops_per_hour=2.0,
            breakdowns_per_shift=0.4,
            reject_rate=0.01,
            setup_s=100.0,
        ),
        MachineKind(
            "deburr",
            (
                SignalSpec(
                    "brush_speed",
                    "rpm",
                    0.0,
                    speed_gain=1450.0,
                    noise_sd=6.0,
                    tau_s=2,
                    lo=0,
                    hi=3000,
                ),
                SignalSpec(
                    "wash_temp",
                    "degC",
                    45.0,
                    load_gain=8.0,
                    noise_sd=0.3,
                    tau_s=600,
                    daily_amp=1.0,
                    lo=0,
                    hi=95,
                ),
                *_motor(1.0, 6.0, 14.0, 1.6),
            ),
            standby_kw=0.8,
            idle_kw=4.0,
            run_kw=8.0,
            faults={
                "bearing_wear": _BEARING,
                "heater_degradation": (FaultEffect("wash_temp", offset=-12.0),),
            },
            micro_stops_per_hour=2.0,
            reject_rate=0.002,
        ),
        MachineKind(
            "cmm",
            (
                SignalSpec(
                    "room_temp", "degC", 20.0, noise_sd=0.05, tau_s=1800, daily_amp=0.6, lo=0, hi=40
                ),
                SignalSpec("probe_deviation", "um", 0.0, noise_sd=1.4, lo=-100, hi=100),
                SignalSpec(
                    "air_bearing_pressure", "bar", 4.2, noise_sd=0.02, tau_s=30, lo=0, hi=10
                ),
            ),
            standby_kw=0.3,
            idle_kw=0.9,
            run_kw=1.6,
            faults={},
            micro_stops_per_hour=1.5,
            breakdowns_per_shift=0.2,
            reject_rate=0.015,
        ),
    )
}
