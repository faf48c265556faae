"""Per-traversal appearance: light, sky, weather, season, sensor settings.

Only appearance changes here; geometry changes (leafless trees, moved cars,
rebuilt houses) are applied in ``sim.variation``.  Colours are linear RGB in
[0, 1]; ``exposure`` multiplies scene radiance before the sRGB curve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TraversalConfig


@dataclass(frozen=True)
class Look:
    """Everything the camera renderer needs to know about one traversal's conditions."""
    sun_dir: tuple[float, float, float]      # unit vector towards the sun, map frame
    sun_color: tuple[float, float, float]    # irradiance colour x intensity
    ambient: tuple[float, float, float]      # sky light on every surface
    sky_zenith: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    fog_distance_m: float                    # e-folding distance of fog; inf = none
    fog_color: tuple[float, float, float]
    noise_sigma: float                       # std of sensor noise in output [0,1] units
    exposure: float
    white_balance: tuple[float, float, float]
    lamps_on: bool                           # street lights + headlights + lit windows
    rain: bool
    shadows: bool
    foliage: tuple[float, float, float] | None   # None = keep each tree's own colour
    snow: bool
    leafless: bool


def _sun(elev_deg: float, azim_deg: float) -> tuple[float, float, float]:
    e, a = np.deg2rad(elev_deg), np.deg2rad(azim_deg)
    return (float(np.cos(e) * np.cos(a)), float(np.cos(e) * np.sin(a)), float(np.sin(e)))


_TIME = {
    # sun elev/azim, sun colour, ambient, zenith, horizon, exposure, white balance, noise
    "dawn": ((8.0, 80.0), (1.1, 0.75, 0.5), (0.22, 0.22, 0.3), (0.35, 0.45, 0.7), (0.95, 0.65, 0.45),
             1.5, (0.9, 1.0, 1.2), 0.02),
    "noon": ((60.0, 200.0), (1.35, 1.3, 1.2), (0.35, 0.38, 0.45), (0.25, 0.45, 0.85), (0.7, 0.8, 0.92),
             1.0, (1.0, 1.0, 1.0), 0.01),
    "dusk": ((6.0, 280.0), (1.0, 0.55, 0.35), (0.2, 0.16, 0.22), (0.25, 0.25, 0.5), (0.9, 0.45, 0.3),
             1.7, (1.1, 1.0, 0.85), 0.025),
    "night": ((-30.0, 0.0), (0.0, 0.0, 0.0), (0.006, 0.008, 0.015), (0.0, 0.001, 0.004), (0.005, 0.005, 0.009),
              3.0, (1.0, 1.0, 1.0), 0.06),
}
_FOLIAGE = {"summer": None, "autumn": (0.62, 0.32, 0.08), "winter": (0.3, 0.22, 0.15)}


def look_for(trav: TraversalConfig, shadows: bool = True) -> Look:
    """The appearance of ``trav`` (time of day x weather x season)."""
    (el, az), sun, amb, zen, hor, exposure, wb, noise = _TIME[trav.time_of_day]
    sun = np.array(sun)
    amb = np.array(amb)
    zen, hor = np.array(zen), np.array(hor)
    fog, fog_color = np.inf, hor
    weather = trav.weather
    if weather == "overcast":
        amb = amb + 0.45 * sun.mean() * np.array([1, 1, 1.02])
        sun = sun * 0.1
        zen = hor = np.full(3, 0.62 if trav.time_of_day != "night" else 0.006)
        fog = 400.0
    elif weather == "fog":
        amb = amb + 0.4 * sun.mean()
        sun = sun * 0.15
        fog = 18.0
        fog_color = np.full(3, 0.72 if trav.time_of_day != "night" else 0.008)
        zen = hor = fog_color
    elif weather == "rain":
        amb = amb + 0.3 * sun.mean()
        sun = sun * 0.05
        fog = 70.0
        zen = hor = np.full(3, 0.45 if trav.time_of_day != "night" else 0.006)
        fog_color = hor
        noise += 0.015
    elif weather != "clear":
        raise ValueError(f"unknown weather {weather!r}")
    return Look(sun_dir=_sun(el, az), sun_color=tuple(map(float, sun)), ambient=tuple(map(float, amb)),
                sky_zenith=tuple(map(float, zen)), sky_horizon=tuple(map(float, hor)),
                fog_distance_m=float(fog), fog_color=tuple(map(float, fog_color)), noise_sigma=float(noise),
                exposure=float(exposure), white_balance=tuple(map(float, wb)),
                lamps_on=trav.time_of_day == "night", rain=weather == "rain",
                shadows=shadows and el > 0 and weather == "clear",
                foliage=_FOLIAGE[trav.season], snow=trav.season == "winter", leafless=trav.season == "winter")
