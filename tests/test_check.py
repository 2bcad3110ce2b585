"""`sealdrop check`: each finding on real files in tmp folders, the tor version parsing on
sample strings, the real `tor --version` once and a real control port once."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop.checks import Targets, check_targets
from sealdrop.checks.codenames import check_codename_queue
from sealdrop.checks.findings import Finding, problem_from_message
from sealdrop.checks.folders import check_free_space, check_onion_key, check_private_dir
from sealdrop.checks.secret_keys import check_public_keys, scan_for_secret_keys, secret_key_places
from sealdrop.checks.tor import (
    check_tor_control,
    check_tor_program,
    parse_pow_module,
    parse_tor_version,
    version_finding,
)
from sealdrop.checks.traces import check_failure_counts, check_noatime, check_reply_owners
from sealdrop.checks.uploads import check_body_rate, check_head_timeout, check_open_files
from sealdrop.cli import main
from sealdrop.keys import KdfCost, encode_public_key, encode_secret_key, load_public_key
from sealdrop.onion.keys import KEY_FILE, load_or_create_service_key
from sealdrop.settings import Settings, load_settings
from sealdrop.storage.counters import COUNTERS_FILE
from sealdrop.tests.tor_local import OfflineTor, free_port, tor_binary

IS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check reads SEALDROP_* variables; the machine running the tests must not leak any.
    for name in list(os.environ):
        if name.startswith("SEALDROP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def secret_key_text() -> str:
    return encode_secret_key(PrivateKey.generate(), "a passphrase", KdfCost.MIN)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    return path


@pytest.fixture
def server(tmp_path: Path, public_key_file: Path) -> Targets:
    """A correctly set up server: private spool and state folders, the public key."""
    return Targets(
        spool_dir=private_dir(tmp_path / "spool"),
        public_key_file=public_key_file,
        state_dir=private_dir(tmp_path / "state"),
    )


def problems(findings: Iterator[Finding] | list[Finding]) -> list[str]:
    return [f.line() for f in findings if not f.ok]


# --- lines -------------------------------------------------------------------------------


def test_lines_say_ok_or_problem_and_fix() -> None:
    assert Finding(True, "all good").line() == "OK all good"
    assert Finding(False, "it broke", "mend it").line() == "PROBLEM it broke: fix: mend it"


def test_a_message_is_split_into_problem_and_fix() -> None:
    semi = problem_from_message("x is wrong; set it to y", "default")
    assert (semi.text, semi.fix) == ("x is wrong", "set it to y")
    sentence = problem_from_message("tor is gone (refused). Start tor.", "default")
    assert (sentence.text, sentence.fix) == ("tor is gone (refused)", "Start tor")
    bare = problem_from_message("no fix here", "do the default")
    assert (bare.text, bare.fix) == ("no fix here", "do the default")


# --- configuration ----------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    status = main(["check", *argv])
    out = capsys.readouterr().out
    return status, out.splitlines()


def test_a_good_server_passes_with_only_ok_lines(
    server: Targets, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Good: it offers only reviewed translations (the shipped ones are not, yet).
    monkeypatch.setenv("SEALDROP_LANGUAGES", "en")
    status, lines = run(
        capsys,
        *("--spool", str(server.spool_dir), "--public-key", str(server.public_key_file)),
        *("--state", str(server.state_dir)),
    )
    assert status == 0, lines
    # Only OK lines, but for the test machine's own mount options (no noatime on /tmp).
    assert lines and all(
        line.startswith("OK ") or line.startswith("WARNING ") and "without noatime" in line
        for line in lines
    )
    assert any("spool folder" in line for line in lines)
    assert any("state folder" in line for line in lines)
    assert any(line.startswith("OK tor ") for line in lines) or shutil.which("tor") is None


def test_quiet_prints_nothing_when_all_is_well(
    server: Targets, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the Dockerfile's HEALTHCHECK runs it: everything from SEALDROP_* variables.
    monkeypatch.setenv("SEALDROP_SPOOL_DIR", str(server.spool_dir))
    monkeypatch.setenv("SEALDROP_PUBLIC_KEY_FILE", str(server.public_key_file))
    status, lines = run(capsys, "--quiet")
    if shutil.which("tor") is None:
        assert lines == [line for line in lines if "tor is not installed" in line]
        return
    assert (status, lines) == (0, [])


def test_quiet_prints_only_the_problems(
    server: Targets, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.spool_dir is not None
    os.chmod(server.spool_dir, 0o750)
    status, lines = run(
        capsys,
        *("--quiet", "--spool", str(server.spool_dir)),
        *("--public-key", str(server.public_key_file)),
    )
    assert status == 1
    assert lines == [
        f"PROBLEM the spool folder {server.spool_dir} is open to other users (mode 0750): "
        f"fix: run `chmod 700 {server.spool_dir}`"
    ]


def test_the_state_and_replies_folders_named_in_the_settings_are_checked(
    tmp_path: Path,
    server: Targets,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    reply_signing_pub: Path,
) -> None:
    replies = private_dir(tmp_path / "replies")
    os.chmod(replies, 0o755)
    monkeypatch.setenv("SEALDROP_SPOOL_DIR", str(server.spool_dir))
    monkeypatch.setenv("SEALDROP_PUBLIC_KEY_FILE", str(server.public_key_file))
    monkeypatch.setenv("SEALDROP_STATE_DIR", str(server.state_dir))
    monkeypatch.setenv("SEALDROP_REPLIES_DIR", str(replies))
    monkeypatch.setenv("SEALDROP_REPLY_SIGNING_KEY_FILE", str(reply_signing_pub))
    status, lines = run(capsys, "--quiet")
    assert status == 1
    assert [line for line in lines if "tor is not installed" not in line] == [
        f"PROBLEM the replies folder {replies} is open to other users (mode 0755): "
        f"fix: run `chmod 700 {replies}`"
    ]
    os.chmod(replies, 0o700)
    _, lines = run(capsys)
    assert any(line.startswith(f"OK the replies folder {replies}: mode 0700") for line in lines)
    assert any(line.startswith(f"OK the state folder {server.state_dir}") for line in lines)
    assert any(line.startswith("OK reply-signing keys: 1 in") for line in lines)
    # With codenames on, one real derivation at the configured cost times the queue.
    assert any("codename queue: one derivation takes" in line for line in lines)
    monkeypatch.delenv("SEALDROP_REPLY_SIGNING_KEY_FILE")
    status, lines = run(capsys, "--quiet")
    assert status == 1
    assert "PROBLEM replies are on but reply_signing_key_file is not set" in "\n".join(lines)


def test_a_bad_config_file_is_a_problem_and_the_rest_is_still_checked(
    tmp_path: Path, server: Targets, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sealdrop.toml"
    config.write_text(
        f'spool_dir = "{server.spool_dir}"\npublic_key_file = "{server.public_key_file}"\n'
        'max_files = "many"\n'
    )
    status, lines = run(capsys, "--config", str(config), "--spool", str(server.spool_dir))
    assert status == 1
    assert lines[0].startswith("PROBLEM configuration: setting max_files")
    assert ": fix: give a whole number" in lines[0]
    # The spool given on the command line is still examined.
    assert any(line.startswith(f"OK the spool folder {server.spool_dir}") for line in lines)


def test_a_good_config_file_is_ok_and_command_line_options_win(
    tmp_path: Path, server: Targets, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sealdrop.toml"
    config.write_text(
        f'spool_dir = "{tmp_path / "elsewhere"}"\n'
        f'public_key_file = "{server.public_key_file}"\nreserve_bytes = 0\n'
    )
    status, lines = run(capsys, "--config", str(config), "--spool", str(server.spool_dir))
    assert lines[0] == (
        f"OK configuration: the config file {config} and SEALDROP_* variables read without error"
    )
    assert not [line for line in lines if "elsewhere" in line]
    assert any(line.endswith(f"in {server.spool_dir}, reserve 0 B") for line in lines)
    assert status == 0 or shutil.which("tor") is None


def test_a_missing_setting_is_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = run(capsys, "--quiet")
    assert status == 1
    assert lines[0].startswith("PROBLEM configuration: setting spool_dir is missing: fix: ")
    assert "SEALDROP_SPOOL_DIR" in lines[0]


# --- keys -------------------------------------------------------------------------------


def check_public_key(path: Path) -> Finding:
    """The one refusal, or the first line of a listing."""
    return next(check_public_keys(path))


def test_the_public_key_loads_and_is_listed(public_key_file: Path) -> None:
    findings = list(check_public_keys(public_key_file))
    text = encode_public_key(load_public_key(public_key_file))
    assert findings == [
        Finding(
            True, f"1 reviewer key in {public_key_file}; each submission is sealed to every one"
        ),
        Finding(True, f"reviewer key 'reviewer': {text}"),
    ]


def test_a_folder_of_keys_is_listed_by_label_and_fingerprint(tmp_path: Path) -> None:
    folder = tmp_path / "reviewers"
    folder.mkdir()
    texts = {}
    for label in ("backup", "alice", "bob"):
        texts[label] = encode_public_key(PrivateKey.generate().public_key)
        (folder / f"{label}.pub").write_text(texts[label] + "\n")
    lines = [finding.line() for finding in check_public_keys(folder)]
    assert lines == [
        f"OK 3 reviewer keys in {folder}; each submission is sealed to every one",
        f"OK reviewer key 'alice': {texts['alice']}",
        f"OK reviewer key 'backup': {texts['backup']}",
        f"OK reviewer key 'bob': {texts['bob']}",
    ]


def test_a_duplicate_or_a_secret_key_in_the_folder_is_a_problem(
    tmp_path: Path, secret_key_text: str
) -> None:
    folder = tmp_path / "reviewers"
    folder.mkdir()
    text = encode_public_key(PrivateKey.generate().public_key)
    (folder / "alice.pub").write_text(text)
    (folder / "alice-again.pub").write_text(text)
    [finding] = check_public_keys(folder)
    assert not finding.ok and "hold the same public key" in finding.text
    assert str(folder / "alice.pub") in finding.text
    (folder / "alice-again.pub").unlink()
    (folder / "zed.pub").write_text(secret_key_text)
    [finding] = check_public_keys(folder)
    assert not finding.ok and "SECRET" in finding.text and "zed.pub" in finding.text


def test_a_missing_public_key_is_a_problem(tmp_path: Path) -> None:
    finding = check_public_key(tmp_path / "reviewer.pub")
    assert not finding.ok
    assert "No such file" in finding.text and "reviewer.pub" in finding.fix


def test_a_damaged_public_key_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "reviewer.pub"
    text = encode_public_key(PrivateKey.generate().public_key)
    path.write_text(text[:-1] + ("a" if text[-1] != "a" else "b") + "\n")
    finding = check_public_key(path)
    assert not finding.ok
    assert "checksum" in finding.text and "copy the whole line" in finding.fix


def test_a_secret_key_given_as_the_public_key_is_a_problem(
    tmp_path: Path, secret_key_text: str
) -> None:
    path = tmp_path / "reviewer.key"
    path.write_text(secret_key_text)
    finding = check_public_key(path)
    assert not finding.ok and "SECRET" in finding.text


@pytest.mark.parametrize("where", ["spool", "state", "state/tor/deep", "replies", "keys"])
def test_a_secret_key_anywhere_the_server_reads_is_found(
    tmp_path: Path, secret_key_text: str, where: str
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    public_key = keys / "reviewer.pub"
    public_key.write_text(encode_public_key(PrivateKey.generate().public_key))
    targets = Targets(
        spool_dir=private_dir(tmp_path / "spool"),
        public_key_file=public_key,
        state_dir=private_dir(tmp_path / "state"),
        replies_dir=private_dir(tmp_path / "replies"),
    )
    (tmp_path / where).mkdir(parents=True, exist_ok=True)
    planted = tmp_path / where / "backup-copy.txt"
    planted.write_text(secret_key_text)
    found = problems(scan_for_secret_keys(secret_key_places(targets)))
    assert len(found) == 1
    assert found[0].startswith(f"PROBLEM {planted} holds a reviewer SECRET key")
    assert f"shred -u {planted}" in found[0]


def test_next_to_the_config_file_too_but_not_in_its_subfolders(
    tmp_path: Path, secret_key_text: str
) -> None:
    # The config file's folder may be shared (/etc, a home folder): only its own files.
    etc = tmp_path / "etc"
    (etc / "other").mkdir(parents=True)
    (etc / "other" / "reviewer.key").write_text(secret_key_text)
    targets = Targets(config_file=etc / "sealdrop.toml")
    assert problems(scan_for_secret_keys(secret_key_places(targets))) == []
    (etc / "reviewer.key").write_text(secret_key_text)
    assert len(problems(scan_for_secret_keys(secret_key_places(targets)))) == 1


def test_a_big_file_starting_with_a_secret_key_is_found(
    tmp_path: Path, secret_key_text: str
) -> None:
    spool = private_dir(tmp_path / "spool")
    (spool / "big.sealed").write_bytes(secret_key_text.encode() + os.urandom(200_000))
    assert len(problems(scan_for_secret_keys([(spool, True)]))) == 1


def test_a_clean_server_gets_one_ok_naming_the_places(server: Targets) -> None:
    assert server.spool_dir is not None
    (server.spool_dir / ("ab" * 16 + ".sealed")).write_bytes(os.urandom(100_000))
    findings = list(scan_for_secret_keys(secret_key_places(server)))
    assert len(findings) == 1 and findings[0].ok
    for place in (server.spool_dir, server.state_dir):
        assert str(place) in findings[0].text


def test_a_hard_link_or_symlink_to_a_key_is_reported_once(
    tmp_path: Path, secret_key_text: str
) -> None:
    spool = private_dir(tmp_path / "spool")
    (spool / "a").write_text(secret_key_text)
    os.link(spool / "a", spool / "b")
    (spool / "c").symlink_to(spool / "a")
    assert len(problems(scan_for_secret_keys([(spool, True)]))) == 1


@pytest.mark.skipif(IS_ROOT, reason="root reads every file; needs an unprivileged user")
def test_an_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    spool = private_dir(tmp_path / "spool")
    hidden = spool / "hidden"
    hidden.write_text("?")
    os.chmod(hidden, 0)
    found = problems(scan_for_secret_keys([(spool, True)]))
    assert len(found) == 1 and "cannot be read" in found[0]


# --- folders ----------------------------------------------------------------------------


def test_a_private_folder_is_ok(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "spool")
    [finding] = check_private_dir(folder, "spool folder")
    assert finding.ok and "mode 0700" in finding.text


def test_a_missing_folder_says_how_to_create_it(tmp_path: Path) -> None:
    [finding] = check_private_dir(tmp_path / "spool", "spool folder")
    assert not finding.ok and "does not exist" in finding.text
    assert f"install -d -m 700 -o USER {tmp_path / 'spool'}" in finding.fix


def test_a_file_or_symlink_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    [as_file] = check_private_dir(tmp_path / "file", "spool folder")
    assert not as_file.ok and "is not a folder" in as_file.text
    real = private_dir(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    [as_link] = check_private_dir(tmp_path / "link", "state folder")
    assert not as_link.ok and "symbolic link" in as_link.text and str(real) in as_link.fix


@pytest.mark.parametrize("mode", [0o701, 0o710, 0o750, 0o755, 0o777])
def test_a_folder_open_to_others_is_a_problem(tmp_path: Path, mode: int) -> None:
    folder = private_dir(tmp_path / "state")
    os.chmod(folder, mode)
    [finding] = check_private_dir(folder, "state folder")
    assert not finding.ok and f"mode {mode:04o}" in finding.text
    assert finding.fix == f"run `chmod 700 {folder}`"


@pytest.mark.skipif(not IS_ROOT, reason="giving a folder to another user needs root")
def test_a_folder_owned_by_another_user_is_a_problem(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "spool")
    os.chown(folder, 65534, 65534)
    [finding] = check_private_dir(folder, "spool folder")
    assert not finding.ok and "belongs to" in finding.text and "chown" in finding.fix


def test_a_folder_its_owner_cannot_write_is_a_problem(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "spool")
    os.chmod(folder, 0o500)
    try:
        findings = check_private_dir(folder, "spool folder")
    finally:
        os.chmod(folder, 0o700)
    if IS_ROOT:
        # root may write anywhere: os.access says yes, and so would the kernel.
        assert [f.ok for f in findings] == [True]
    else:
        assert [f.fix for f in findings] == [f"run `chmod 700 {folder}`"]


def test_free_space_against_the_reserve(tmp_path: Path) -> None:
    free = check_free_space(tmp_path, 0)
    assert free.ok and "reserve 0 B" in free.text
    short = check_free_space(tmp_path, 1024**5 * 1000)
    assert not short.ok and "refuses submissions" in short.text
    assert "reserve_bytes" in short.fix


def test_onion_key_absent_present_and_exposed(tmp_path: Path) -> None:
    state = private_dir(tmp_path / "state")
    assert check_onion_key(state).ok
    assert "first start makes one" in check_onion_key(state).text
    key = load_or_create_service_key(state)
    present = check_onion_key(state)
    assert present.ok and f"{key.service_id}.onion" in present.text
    os.chmod(state / KEY_FILE, 0o644)
    exposed = check_onion_key(state)
    assert not exposed.ok and f"chmod 600 {state / KEY_FILE}" in exposed.fix


def test_everything_wrong_at_once_gives_one_line_each(tmp_path: Path, secret_key_text: str) -> None:
    spool = private_dir(tmp_path / "spool")
    os.chmod(spool, 0o755)
    (spool / "reviewer.key").write_text(secret_key_text)
    targets = Targets(
        spool_dir=spool,
        public_key_file=tmp_path / "missing.pub",
        state_dir=tmp_path / "no-state",
        tor_cmd=str(tmp_path / "no-tor"),
    )
    found = problems(check_targets(targets))
    assert len(found) == 5, found
    assert all(": fix: " in line for line in found)


# --- tor --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Tor version 0.4.9.11.\nThis build of Tor is covered by the GNU GPL", (0, 4, 9, 11)),
        ("Tor version 0.4.8.16.", (0, 4, 8, 16)),
        ("Tor version 0.4.7.16 (git-8a3bd1b0f1c2b1e2).", (0, 4, 7, 16)),
        ("Tor version 0.4.8.1-alpha (git-1234567890abcdef).", (0, 4, 8, 1)),
        ("Jan 01 00:00:00.000 [notice] Tor 0.3.5.8 ...\nTor version 0.3.5.8.", (0, 3, 5, 8)),
        ("Tor version 0.5.0.", (0, 5, 0, 0)),
        ("tor: command not found", None),
        ("", None),
    ],
)
def test_tor_version_parsing(output: str, expected: tuple[int, int, int, int] | None) -> None:
    assert parse_tor_version(output) == expected


@pytest.mark.parametrize(
    ("version", "good"),
    [
        ((0, 3, 5, 8), False),
        ((0, 4, 7, 16), False),
        # 0.4.8 has proof-of-work only as torrc options, not in ADD_ONION.
        ((0, 4, 8, 16), False),
        ((0, 4, 9, 1), False),
        ((0, 4, 9, 2), True),  # 0.4.9.2-alpha: ADD_ONION's PoWDefensesEnabled
        ((0, 4, 9, 11), True),
        ((0, 5, 0, 0), True),
    ],
)
def test_proof_of_work_needs_tor_0_4_9_2(version: tuple[int, int, int, int], good: bool) -> None:
    finding = version_finding(version, "here")
    assert finding.ok is good
    if not good:
        assert "proof-of-work" in finding.text and "0.4.9.2" in finding.text
        assert "upgrade tor" in finding.fix


def test_pow_module_parsing() -> None:
    assert parse_pow_module("relay: yes\ndirauth: yes\ndircache: yes\npow: yes\n") is True
    assert parse_pow_module("relay: yes\npow: no\n") is False
    assert parse_pow_module("Unrecognized option '--list-modules'") is None


def test_tor_missing_is_a_problem(tmp_path: Path) -> None:
    [finding] = check_tor_program(str(tmp_path / "no-tor"))
    assert (
        not finding.ok and "not installed" in finding.text and "apt-get install tor" in finding.fix
    )


def fake_tor(tmp_path: Path, version_line: str, modules: str) -> str:
    script = tmp_path / "tor"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "{version_line}"; else printf "{modules}"; fi\n'
    )
    script.chmod(stat.S_IRWXU)
    return str(script)


def test_an_old_tor_is_a_problem(tmp_path: Path) -> None:
    [finding] = check_tor_program(fake_tor(tmp_path, "Tor version 0.4.7.16.", r"pow: no\n"))
    assert not finding.ok and "tor 0.4.7.16" in finding.text


def test_a_tor_without_the_pow_module_is_a_problem(tmp_path: Path) -> None:
    findings = check_tor_program(fake_tor(tmp_path, "Tor version 0.4.9.3.", r"pow: no\n"))
    assert [f.ok for f in findings] == [True, False]
    assert "pow: no" in findings[1].text


def test_a_tor_that_prints_no_version_is_a_problem(tmp_path: Path) -> None:
    [finding] = check_tor_program(fake_tor(tmp_path, "Segmentation fault", ""))
    assert not finding.ok and "did not report a version" in finding.text


@pytest.mark.tor
@pytest.mark.skipif(tor_binary() is None, reason="needs the Debian tor package")
def test_the_real_tor() -> None:
    findings = check_tor_program(tor_binary() or "tor")
    assert findings[0].text.startswith("tor 0.")
    # Debian 12's tor is 0.4.9 with the pow module; this suite expects at least that.
    assert [f.ok for f in findings] == [True], findings


def test_a_control_port_nobody_listens_on_is_a_problem() -> None:
    [finding] = check_tor_control(f"127.0.0.1:{free_port()}")
    assert not finding.ok and "cannot reach tor's control port" in finding.text
    assert "ControlPort" in finding.fix


@pytest.mark.tor
@pytest.mark.skipif(tor_binary() is None, reason="needs the Debian tor package")
@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")
def test_a_real_control_port_with_cookie_and_with_a_password(tmp_path: Path) -> None:
    from sealdrop.tests.tor_local import hash_password

    tor = OfflineTor(tmp_path / "tor")
    tor.start()
    try:
        findings = check_tor_control(tor.control)
    finally:
        tor.stop()
    assert [f.ok for f in findings] == [True, True], findings
    assert "accepts sealdrop's authentication" in findings[0].text
    # A password-protected tor refuses the cookie-or-nothing authentication check uses.
    locked = OfflineTor(tmp_path / "locked", hashed_password=hash_password("horse"))
    locked.start()
    try:
        [refused] = check_tor_control(locked.control)
    finally:
        locked.stop()
    assert not refused.ok and "refused authentication" in refused.text


def test_check_reads_the_settings_without_the_server() -> None:
    # check once imported serve.py (Flask, gunicorn) only to reach its settings code.
    script = (
        "import sys, sealdrop.checks, sealdrop.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'gunicorn')"
        " or m.startswith('sealdrop.server')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- what a seized disk could tell ----------------------------------------------------------


def test_noatime_is_found_per_file_system(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    findings = list(check_noatime([tmp_path, shm] if shm.is_dir() else [tmp_path]))
    mount = next(f for f in findings if str(tmp_path) in f.text)
    options = Path("/proc/self/mountinfo").read_text()
    assert mount.warning == ("without noatime" in mount.text)
    assert mount.ok and options  # a warning never fails the check
    if shm.is_dir():
        assert any(f.ok and not f.warning and "tmpfs" in f.text for f in findings)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_reply_owned_by_another_user_is_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "replies"
    folder.mkdir(mode=0o700)
    assert not check_reply_owners(folder).warning
    path = folder / ("ab" * 16 + "-" + "cd" * 16 + ".reply")
    path.write_bytes(b"x")
    os.chown(path, 65534, 65534)
    finding = check_reply_owners(folder)
    assert finding.warning and "1 reply file(s)" in finding.text
    assert finding.line().startswith("WARNING ")


def test_failed_uploads_are_reported_from_the_daily_counts(tmp_path: Path) -> None:
    assert check_failure_counts(tmp_path).ok
    assert not check_failure_counts(tmp_path).warning
    (tmp_path / COUNTERS_FILE).write_text('{"2026-12-01": {"refused_full": 3}}')
    finding = check_failure_counts(tmp_path)
    assert finding.warning and "2026-12-01: refused full 3" in finding.text


def codename_settings(tmp_path: Path, **values: str) -> Settings:
    env = {
        "SEALDROP_SPOOL_DIR": str(tmp_path),
        "SEALDROP_PUBLIC_KEY_FILE": str(tmp_path / "reviewer.pub"),
        "SEALDROP_STATE_DIR": str(tmp_path / "state"),
        "SEALDROP_REPLIES_DIR": str(tmp_path / "replies"),
    }
    env.update({f"SEALDROP_{name.upper()}": value for name, value in values.items()})
    return load_settings(env)


def test_the_codename_queue_is_checked_against_its_wait(tmp_path: Path) -> None:
    settings = codename_settings(tmp_path)
    (fine,) = check_codename_queue(settings, lambda cost: 0.25)
    assert fine.line() == (
        "OK codename queue: one derivation takes 0.25 s here, a full queue of 32 entries "
        "about 8 s, within codename_wait_seconds (30 s)"
    )
    # 2 slots, one kept for uploads: 32 entries at 2 s each take 64 s to drain.
    (slow,) = check_codename_queue(settings, lambda cost: 2.0)
    assert slow.ok and slow.warning
    assert "a full queue of 32 entries about 64 s, longer than codename_wait_seconds" in (slow.text)
    assert slow.fix == "lower codename_queue_length to 15 or raise codename_wait_seconds"
    # 4 slots: entries run in 3 at once.
    wider = codename_settings(tmp_path, codename_max_concurrent="4", codename_wait_seconds="22")
    (fine,) = check_codename_queue(wider, lambda cost: 2.0)
    assert fine.ok and not fine.warning and "about 21 s" in fine.text


def test_the_codename_queue_is_not_checked_without_codenames(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "SEALDROP_SPOOL_DIR": str(tmp_path),
            "SEALDROP_PUBLIC_KEY_FILE": str(tmp_path / "reviewer.pub"),
            "SEALDROP_STATE_DIR": str(tmp_path / "state"),
        }
    )
    assert list(check_codename_queue(settings, lambda cost: 100.0)) == []


def test_the_upload_rate_floor_is_checked_against_a_stalling_tor_upload(tmp_path: Path) -> None:
    default = check_body_rate(codename_settings(tmp_path))
    assert default.ok and not default.warning
    assert default.text.startswith("upload rate floor: 500 bytes a second over 120 s;")
    short = check_body_rate(codename_settings(tmp_path, body_rate_window_seconds="60"))
    assert short.warning and "would cut a Tor upload at 20 KB/s" in short.text
    greedy = check_body_rate(codename_settings(tmp_path, body_min_rate="15000"))
    assert greedy.warning and "lower body_min_rate" in greedy.fix
    off = check_body_rate(codename_settings(tmp_path, body_min_rate="0"))
    assert off.ok and "off" in off.text


def test_a_head_deadline_too_short_for_tor_is_warned_about(tmp_path: Path) -> None:
    default = check_head_timeout(codename_settings(tmp_path))
    assert default.line() == "OK request head deadline: 60 s from the connection's opening"
    short = check_head_timeout(codename_settings(tmp_path, head_timeout_seconds="5"))
    assert short.warning and "raise head_timeout_seconds to 20" in short.fix


def test_the_open_file_limit_is_checked_against_max_connections(tmp_path: Path) -> None:
    # 8000 connections in one worker: a socket and a spool file each, + 256.
    low = check_open_files(codename_settings(tmp_path), hard_limit=1024)
    assert not low.ok
    assert "max_connections 8000 needs 16256 open files per worker process" in low.text
    assert "LimitNOFILE" in low.fix and "lower max_connections" in low.fix
    enough = check_open_files(codename_settings(tmp_path), hard_limit=16256)
    assert enough.ok and "needs 16256 open files" in enough.text
    fewer = check_open_files(codename_settings(tmp_path, max_connections="300"), hard_limit=1024)
    assert fewer.ok
