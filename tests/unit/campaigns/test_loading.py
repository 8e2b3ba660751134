"""Bad campaign files give one-screen errors naming the file, the field and the value."""

from __future__ import annotations

import pytest

from voltloop.campaigns.loading import MAX_PROBLEMS_SHOWN, CampaignSpecError, parse_campaign

SOURCE = "campaigns/mine.toml"


def error_for(text: str) -> CampaignSpecError:
    with pytest.raises(CampaignSpecError) as caught:
        parse_campaign(text, source=SOURCE)
    error = caught.value
    assert error.exit_code == 2
    message = str(error)
    assert message.startswith(f"invalid campaign file {SOURCE}")
    assert len(message.splitlines()) <= MAX_PROBLEMS_SHOWN + 2
    return error


def test_malformed_toml_names_line_and_column(protocol_toml: str) -> None:
    error = error_for(protocol_toml.replace("[cycling]", "[cycling"))
    message = str(error)
    assert "not valid TOML" in message
    lineno = protocol_toml.splitlines().index("[cycling]") + 1
    assert f"line {lineno}" in message and "column" in message
    assert "'[cycling'" in message


def test_wrong_type(protocol_toml: str) -> None:
    error = error_for(protocol_toml.replace("rounds = 2", 'rounds = "two"'))
    assert [(p.field, p.value) for p in error.problems] == [("rounds", "'two'")]
    assert "valid integer" in str(error)


def test_unknown_field_suggests_the_right_name(protocol_toml: str) -> None:
    error = error_for(protocol_toml.replace("max_temperature_C = 60", "max_temprature_C = 60"))
    message = str(error)
    assert (
        "cell.max_temprature_C = 60: unknown field (did you mean 'max_temperature_C'?)" in message
    )
    assert "cell.max_temperature_C: required field is missing" in message


def test_out_of_range_value_says_what_is_allowed(protocol_toml: str) -> None:
    error = error_for(
        protocol_toml.replace("nominal_capacity_Ah = 1.1", "nominal_capacity_Ah = -1")
    )
    assert "cell.nominal_capacity_Ah = -1: must be > 0" in str(error)


def test_missing_required_field(protocol_toml: str) -> None:
    error = error_for(protocol_toml.replace("batch_size = 4\n", ""))
    assert str(error).endswith("batch_size: required field is missing")


def test_bad_bounds_name_the_parameter_field(steps_toml: str) -> None:
    error = error_for(steps_toml.replace("values = [1.0, 2.0, 3.0]", "bounds = [3.0, 1.0]"))
    assert (
        "space.parameters[1].bounds = [3.0, 1.0]: must be ordered [low, high] with low < high"
        in str(error)
    )


def test_unknown_parameter_reference_in_a_step(steps_toml: str) -> None:
    error = error_for(steps_toml.replace('rate_C = "I2"', 'rate_C = "I3"'))
    assert (
        "space.charge[2].rate_C = 'I3': is not a parameter; known parameters: I1, I2, SOC1"
        in str(error)
    )


def test_cross_field_rules(protocol_toml: str) -> None:
    assert "batch_size = 9: must not exceed the cycler channels available (8)" in str(
        error_for(protocol_toml.replace("batch_size = 4", "batch_size = 9"))
    )
    assert "lifetime.early_prediction_cycle = 100: must be below max_cycles (80)" in str(
        error_for(protocol_toml.replace("max_cycles = 1500", "max_cycles = 80"))
    )
    assert "cell.max_voltage_V = 1.9: the voltage window must be ordered" in str(
        error_for(protocol_toml.replace("max_voltage_V = 3.6", "max_voltage_V = 1.9"))
    )
    assert "cycling.upper_cutoff_V = 4.2: must not be above the cell's max_voltage_V" in str(
        error_for(protocol_toml.replace("upper_cutoff_V = 3.6", "upper_cutoff_V = 4.2"))
    )
    no_pstat = protocol_toml.replace('potentiostat = { url = "sim://potentiostat" }\n', "")
    assert "instruments.potentiostat: EIS checkpoints need a potentiostat" in str(
        error_for(no_pstat)
    )
    too_fast = protocol_toml.replace("max_charge_rate_C = 10", "max_charge_rate_C = 6")
    assert "space.charge[0].rate_C = 'CC1': can reach 8 C" in str(error_for(too_fast))


def test_kind_is_checked_first(protocol_toml: str) -> None:
    error = error_for(protocol_toml.replace('kind = "protocol"', 'kind = "protocols"'))
    assert str(error).endswith("kind = 'protocols': must be 'protocol' or 'materials'")


def test_wrong_enum_and_bad_url(protocol_toml: str) -> None:
    message = str(error_for(protocol_toml.replace('direction = "maximize"', 'direction = "up"')))
    assert "objectives[0].direction = 'up': must be one of 'maximize' or 'minimize'" in message
    message = str(error_for(protocol_toml.replace("sim://cycler", "http://cycler")))
    assert "instruments.cyclers[0].url = 'http://cycler': unsupported instrument URL" in message


def test_materials_rules(materials_toml: str) -> None:
    message = str(error_for(materials_toml.replace('site = "Fe"', 'site = "Fx"')))
    assert "pool.substitutions[0].site = 'Fx': 'Fx' is not a chemical element symbol" in message
    message = str(error_for(materials_toml.replace("max = 0.3", "max = 0.3\nmin = 0.5")))
    assert "constraints[0].min = 0.5: must be below max (0.3)" in message
    message = str(error_for(materials_toml.replace('"specific_energy"', '"charge_time"')))
    assert "objectives[0].metric = 'charge_time': not available in a materials campaign" in message


def test_many_problems_fit_on_one_screen(protocol_toml: str) -> None:
    text = protocol_toml + "".join(f"typo_{i} = {i}\n" for i in range(30))
    error = error_for(
        text.replace("[lifetime]", "\n".join(f"t{i} = 1" for i in range(30)) + "\n[lifetime]")
    )
    assert len(error.problems) >= 30
    assert "more" in str(error).splitlines()[-1]


def test_charge_step_kind_missing_or_unknown(steps_toml: str) -> None:
    text = steps_toml.replace('{ step = "rest", duration_s = 30 }', "{ duration_s = 30 }")
    text = text.replace('{ step = "cc", rate_C = "I2"', '{ step = "ccv", rate_C = "I2"')
    message = str(error_for(text))
    assert "space.charge[1].step: required field is missing; must be one of 'cc', 'cv', 'rest'" in (
        message
    )
    assert "space.charge[2].step = 'ccv': must be one of 'cc', 'cv', 'rest'" in message
