"""Loading tollway.yaml: every problem names its exact place in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config.loader import ConfigError, load_config, load_config_file

NAMES = """
backends:
  names:
    url: http://names.internal:8000/
apis:
  names:
    path: /names
    backend: names
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(text, source="tollway.yaml", env=env or {})
    return caught.value.messages


def test_a_misspelt_backend_is_named_with_a_suggestion() -> None:
    text = NAMES.replace("backend: names", "backend: nmaes")
    assert problems(text) == [
        "apis.names.backend: no backend named 'nmaes' (did you mean 'names'?)"
    ]


def test_backend_pool_mistakes_are_named() -> None:
    both = NAMES.replace(
        "    url: http://names.internal:8000/\n",
        "    url: http://names.internal:8000/\n    targets: [{url: http://a:1}]\n",
    )
    assert problems(both) == [
        "backends.names: a backend needs exactly one of 'url', 'targets' or 'app'"
    ]
    paths = NAMES.replace(
        "    url: http://names.internal:8000/\n",
        "    targets: [{url: http://a:1/v1}, {url: http://b:1/v2}]\n",
    )
    assert problems(paths) == [
        "backends.names: targets: every target needs the same path (they are "
        "instances of one service; found '/v1', '/v2')"
    ]
    key_only = NAMES.replace(
        "    url: http://names.internal:8000/\n",
        "    url: https://names.internal\n    tls: {key_file: /k.pem}\n",
    )
    assert problems(key_only) == [
        "backends.names.tls: 'key_file' needs 'cert_file' (the client certificate)"
    ]
    weight = NAMES.replace(
        "    url: http://names.internal:8000/\n",
        "    targets: [{url: http://a:1, weight: 0}]\n    balance: random\n",
    )
    assert len(problems(weight)) == 2
    app = NAMES.replace(
        "    url: http://names.internal:8000/\n",
        "    app: tollway.samples.names:app\n    retries: 1\n",
    )
    assert problems(app) == [
        "backends.names: an in-process 'app' backend has no sockets: no health_check, "
        "circuit_breaker, tls, retries, max_idle_seconds or max_requests"
    ]


def test_the_error_text_starts_with_the_file_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(NAMES.replace("backend: names", "backend: nmaes"), source="my.yaml", env={})
    assert str(caught.value).startswith("my.yaml: apis.names.backend: no backend named 'nmaes'")


def test_an_unknown_backend_with_no_close_match_lists_the_backends() -> None:
    text = NAMES.replace("backend: names", "backend: zzz")
    assert problems(text) == ["apis.names.backend: no backend named 'zzz' (backends: names)"]


def test_unknown_fields_suggest_the_intended_one() -> None:
    text = NAMES.replace("path: /names", "pathh: /names\n    path: /names") + "apiss: {}\n"
    assert problems(text) == [
        "apis.names.pathh: unknown field (did you mean 'path'?)",
        "apiss: unknown field (did you mean 'apis'?)",
    ]


def test_list_entries_are_named_by_index() -> None:
    text = NAMES + "    operations: ['GET /a', 'FETCH /b', {method: GET}]\n"
    assert problems(text) == [
        "apis.names.operations[1].method: should be 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', "
        "'DELETE', 'OPTIONS' or '*' (got 'FETCH')",
        "apis.names.operations[2].path: required field is missing",
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = """
backends:
  b: {url: ftp://x, read_timeout: -1}
apis:
  Bad: {path: /x, backend: b}
  c: {backend: b}
"""
    assert problems(text) == [
        "backends.b.url: 'ftp://x' is not an http:// or https:// URL",
        "backends.b.read_timeout: should be greater than 0 (got -1)",
        "apis.Bad: 'Bad' is not a valid name: use lowercase letters, digits, '-' and '_', "
        "starting with a letter or digit (at most 100 characters)",
        "apis.c.path: required field is missing",
    ]


@pytest.mark.parametrize(
    ("path", "shown", "prefix"),
    [
        ("/docs/x", "/docs/x", "/docs"),
        ("/-/health", "/-/health", "/-"),
        ("/portal", "/portal", "/portal"),
        ("/admin/", "/admin", "/admin"),
    ],
)
def test_reserved_paths_are_rejected_with_a_clear_reason(
    path: str, shown: str, prefix: str
) -> None:
    assert problems(NAMES.replace("path: /names", f"path: {path}")) == [
        f"apis.names.path: path {shown!r} collides with Tollway's own {prefix!r} prefix "
        "(reserved: /docs, /portal, /admin, /-)"
    ]


def test_two_apis_cannot_share_a_path() -> None:
    text = NAMES + "  more:\n    path: /names/\n    backend: names\n"
    assert problems(text) == ["apis.more.path: '/names' is already used by api 'names'"]


def test_products_must_list_existing_apis_once() -> None:
    text = NAMES + "products:\n  gold:\n    apis: [names, nmes, names]\n"
    assert problems(text) == [
        "products.gold.apis[1]: no api named 'nmes' (did you mean 'names'?)",
        "products.gold.apis[2]: api 'names' is listed twice",
    ]


def test_header_references_must_name_a_named_value_in_the_file() -> None:
    text = NAMES.replace(
        "http://names.internal:8000/", "http://n\n    headers: {x-functions-key: '{{ app-kye }}'}"
    )
    text += "named_values:\n  app-key: {value: abc}\n"
    assert problems(text) == [
        "backends.names.headers.x-functions-key: no named value 'app-kye' in this file "
        "(did you mean 'app-key'?); {{...}} must name a named value defined in the same file "
        "(one already in the database is not enough)"
    ]
    fixed = load_config(text.replace("app-kye", "app-key"), source="t", env={})
    assert fixed.backends["names"].headers == {"x-functions-key": "{{ app-key }}"}


def test_environment_variables_are_interpolated_before_validation() -> None:
    text = """
backends:
  names:
    url: ${NAMES_URL}
    read_timeout: ${TIMEOUT:-12.5}
    description: costs $${PRICE} per ${UNIT:-call}
named_values:
  function-app-key: {value: "${FUNCTION_APP_KEY}", secret: true}
"""
    env = {"NAMES_URL": "https://names.example.com/v1", "FUNCTION_APP_KEY": "s3cr3t"}
    config = load_config(text, source="t", env=env)
    backend = config.backends["names"]
    assert backend.url == "https://names.example.com/v1"
    assert backend.read_timeout == 12.5
    assert backend.description == "costs ${PRICE} per call"
    assert config.named_values["function-app-key"].value == "s3cr3t"


def test_a_missing_environment_variable_names_the_place() -> None:
    text = "named_values:\n  function-app-key: {value: '${FUNCTION_APP_KEY}', secret: true}\n"
    assert problems(text, env={"OTHER": "x"}) == [
        "named_values.function-app-key.value: environment variable FUNCTION_APP_KEY is not set"
    ]


def test_a_broken_reference_explains_the_escape() -> None:
    assert problems("named_values:\n  a: {value: 'x ${ y'}\n") == [
        "named_values.a.value: '${' must start a reference such as ${NAME} or "
        "${NAME:-default}; write '$${' for a literal '${'"
    ]


def test_secret_values_are_never_echoed_in_errors() -> None:
    messages = problems("named_values:\n  pin: {value: 918273, secret: true}\n")
    assert messages == ["named_values.pin.value: should be text; put the value in quotes"]
    assert "918273" not in str(messages)


def test_yaml_syntax_errors_give_line_and_column() -> None:
    assert problems("apis:\n  names: {path: /x\n") == [
        "line 3, column 1: expected ',' or '}', but got '<stream end>'"
    ]


def test_duplicate_keys_are_errors_not_silently_merged() -> None:
    text = NAMES + "  names:\n    path: /other\n    backend: names\n"
    assert problems(text) == ["line 9, column 3: duplicate key 'names'"]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "apis:\nproducts:\n"])
def test_an_empty_file_is_an_empty_config(text: str) -> None:
    config = load_config(text, source="t", env={})
    assert (config.apis, config.backends, config.products, config.policies) == ({}, {}, {}, [])


def test_the_top_level_must_be_a_mapping() -> None:
    assert problems("- names\n") == [
        "the top level must be a mapping of sections "
        "(backends, named_values, apis, products, policies), not a list"
    ]


def test_policy_problems_name_the_entry_and_option() -> None:
    text = NAMES + (
        "    policies:\n"
        "      - {type: rate-limit, calls: 10}\n"
        "      - {type: rate-limit, calss: 10}\n"
        "      - {type: rate-limt}\n"
        "      - {type: rate-limit, period: 20/90s, key: nobody}\n"
        "      - {type: quota, calls: 100, period: fortnight}\n"
        "      - {type: ip-filter, deny: [10.0.0.0/33]}\n"
    )
    assert problems(text) == [
        "apis.names.policies[1].calss: unknown field (did you mean 'calls'?)",
        "apis.names.policies[2]: unknown policy type 'rate-limt' (known types: cache, cors, "
        "ip-filter, quota, rate-limit, request-size-limit, set-header, timeout, validate-jwt, "
        "websocket)",
        "apis.names.policies[3].key: 'nobody' is not a counter key: use subscription, ip, user, "
        "api or header:<name>",
        "apis.names.policies[4].period: period 'fortnight': use day, week, month, year or seconds",
        "apis.names.policies[5].deny: '10.0.0.0/33' is not an IP address or CIDR range "
        "(e.g. 10.0.0.0/8)",
    ]


def test_valid_policies_are_normalised() -> None:
    config = load_config(NAMES + "policies: [{type: rate-limit, calls: '5'}]\n", source="t", env={})
    assert config.policies == [{"type": "rate-limit", "calls": 5}]
    config = load_config(
        NAMES + "policies: [{type: rate-limit, period: 20/90s}]\n", source="t", env={}
    )
    assert config.policies == [{"type": "rate-limit", "calls": 20, "period": 90.0}]


def test_load_config_file_reads_the_file_and_uses_the_given_environment(tmp_path: Path) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text(NAMES.replace("http://names.internal:8000/", "${URL}"))
    config = load_config_file(path, env={"URL": "http://elsewhere"})
    assert config.backends["names"].url == "http://elsewhere"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_file(tmp_path / "nope.yaml", env={})
    assert str(caught.value) == f"config file {str(tmp_path / 'nope.yaml')!r} does not exist"
