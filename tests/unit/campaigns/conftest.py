"""Small campaign texts for the spec and loader tests (no file I/O)."""

from __future__ import annotations

import pytest

PROTOCOL_TOML = """
name = "attia-mini"
kind = "protocol"
seed = 3
rounds = 2
batch_size = 4

[lifetime]
early_prediction_cycle = 100
max_cycles = 1500

[cell]
kind = "lfp_graphite_18650"
chemistry = "LFP/graphite"
nominal_capacity_Ah = 1.1
min_voltage_V = 2.0
max_voltage_V = 3.6
max_charge_rate_C = 10
max_discharge_rate_C = 20
max_temperature_C = 60
chamber_temperature_C = 30

[instruments]
cyclers = [{ url = "sim://cycler", channels = 8 }]
potentiostat = { url = "sim://potentiostat" }

[eis]
every_cycles = 50

[[objectives]]
metric = "cycle_life"
direction = "maximize"

[[constraints]]
metric = "peak_temperature"
max = 45.0

[space]
preset = "attia2020"

[cycling]
charge_rate_C = 1.0
upper_cutoff_V = 3.6
cv_until_rate_C = 0.05
discharge_rate_C = 4.0
lower_cutoff_V = 2.0
"""

STEPS_TOML = PROTOCOL_TOML.replace(
    '[space]\npreset = "attia2020"\n',
    """[space]
parameters = [
  { name = "I1", bounds = [2.0, 6.0] },
  { name = "I2", values = [1.0, 2.0, 3.0] },
  { name = "SOC1", unit = "soc", bounds = [0.2, 0.6] },
]
charge = [
  { step = "cc", rate_C = "I1", soc_delta = "SOC1" },
  { step = "rest", duration_s = 30 },
  { step = "cc", rate_C = "I2", until_voltage_V = 3.55 },
]
""",
)

MATERIALS_TOML = """
name = "olivine-screen"
kind = "materials"
rounds = 3
batch_size = 4

[lifetime]
early_prediction_cycle = 20
max_cycles = 50

[cell]
kind = "coin_cell_half"
nominal_capacity_Ah = 0.003
min_voltage_V = 2.0
max_voltage_V = 5.0
max_charge_rate_C = 5
max_discharge_rate_C = 5
max_temperature_C = 55
chamber_temperature_C = 25

[instruments]
cyclers = [{ url = "socket://127.0.0.1:5025", channels = 16, identity = "voltloop" }]

[[objectives]]
metric = "specific_energy"
direction = "maximize"

[[constraints]]
metric = "thermal_risk"
max = 0.3

[pool]
[[pool.substitutions]]
prototype = "olivine-LiFePO4"
site = "Fe"
substituents = ["Mn", "Co", "Ni"]
fractions = [0.25, 0.5, 1.0]

[test_protocol]
charge_rate_C = 0.5
upper_cutoff_V = 4.5
discharge_rate_C = 0.5
lower_cutoff_V = 2.5
"""


@pytest.fixture
def protocol_toml() -> str:
    return PROTOCOL_TOML


@pytest.fixture
def steps_toml() -> str:
    return STEPS_TOML


@pytest.fixture
def materials_toml() -> str:
    return MATERIALS_TOML
