"""scripts/download_data.sh and download_raw_data.sh, offline: a local fake data.zip and a fake curl."""

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

from linkbert.tasks import release_data_files

DOWNLOAD_DATA = REPO / "scripts" / "download_data.sh"
DOWNLOAD_RAW = REPO / "scripts" / "download_raw_data.sh"

LAYOUT = release_data_files()  # the files the release's zip holds (linkbert.tasks)


def make_zip(path: Path, leave_out: str = "") -> Path:
    """A stand-in for the release's data.zip: a top-level data/ folder, one line per file."""
    with zipfile.ZipFile(path, "w") as z:
        for name in LAYOUT:
            if name != leave_out:
                z.writestr(f"data/{name}", json.dumps({"id": name}) + "\n")
        z.writestr("data/README.md", "the zip's own readme\n")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data/ folder as the repository has it: a tracked README and samples."""
    data = tmp_path / "data"
    (data / "samples").mkdir(parents=True)
    (data / "README.md").write_text("our readme\n")
    (data / "samples" / "x.json").write_text("{}\n")
    return data


def run_download(data_dir: Path, zip_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATA_DIR=str(data_dir), DATA_ZIP_URL=str(zip_path), PYTHON=sys.executable)
    return subprocess.run(["bash", str(DOWNLOAD_DATA), *args], env=env, capture_output=True, text=True)


def test_unpacks_verifies_and_keeps_readme_and_samples(tmp_path, data_dir):
    result = run_download(data_dir, make_zip(tmp_path / "data.zip"))
    assert result.returncode == 0, result.stderr
    for name in LAYOUT:
        assert json.loads((data_dir / name).read_text()) == {"id": name}
    assert (data_dir / "README.md").read_text() == "our readme\n"
    assert (data_dir / "samples" / "x.json").read_text() == "{}\n"
    assert not (data_dir / ".download").exists()  # zip and staging removed
    assert not (data_dir / "data").exists()       # the zip's top-level folder was unwrapped
    # a second run sees the complete layout and does nothing
    again = run_download(data_dir, tmp_path / "no-such.zip")
    assert again.returncode == 0 and "already complete" in again.stdout


def test_keep_zip(tmp_path, data_dir):
    result = run_download(data_dir, make_zip(tmp_path / "data.zip"), "--keep-zip")
    assert result.returncode == 0, result.stderr
    assert zipfile.is_zipfile(data_dir / ".download" / "data.zip")


def test_incomplete_zip_is_refused_without_touching_data(tmp_path, data_dir):
    zip_path = make_zip(tmp_path / "data.zip", leave_out="mc/medqa_usmle_hf/dev.json")
    result = run_download(data_dir, zip_path)
    assert result.returncode == 1
    assert "lacks expected files" in result.stderr and "mc/medqa_usmle_hf/dev.json" in result.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == [".download", "README.md", "samples"]


def test_corrupt_zip_is_removed(tmp_path, data_dir):
    bad = tmp_path / "data.zip"
    bad.write_bytes(make_zip(tmp_path / "good.zip").read_bytes()[:500])
    result = run_download(data_dir, bad)
    assert result.returncode == 1 and "not a complete zip file" in result.stderr
    assert not (data_dir / ".download" / "data.zip.part").exists()


def test_resumes_after_an_interrupted_install(tmp_path, data_dir):
    zip_path = make_zip(tmp_path / "data.zip")
    # an earlier run moved qa/ into place and was killed before the rest
    with zipfile.ZipFile(zip_path) as z:
        for name in LAYOUT:
            if name.startswith("qa/"):
                (data_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (data_dir / name).write_bytes(z.read(f"data/{name}"))
    result = run_download(data_dir, zip_path)
    assert result.returncode == 0, result.stderr
    assert "Already in place" in result.stdout
    assert all((data_dir / name).is_file() for name in LAYOUT)


def test_refuses_a_different_existing_folder_unless_forced(tmp_path, data_dir):
    mine = data_dir / "seqcls" / "HoC_hf" / "train.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own preprocessing, longer than the zip's\n")
    zip_path = make_zip(tmp_path / "data.zip")
    result = run_download(data_dir, zip_path)
    assert result.returncode == 1
    assert "seqcls already exists and differs from the zip" in result.stderr and "--force" in result.stderr
    assert not (data_dir / "qa").exists()  # refused before anything moved
    assert mine.read_text().startswith("my own")
    forced = run_download(data_dir, zip_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(mine.read_text()) == {"id": "seqcls/HoC_hf/train.json"}


def test_unknown_option(tmp_path, data_dir):
    result = run_download(data_dir, tmp_path / "data.zip", "--bogus")
    assert result.returncode == 2 and "unknown option" in result.stderr


def test_unreachable_host_is_named_with_the_local_zip_way_and_no_empty_folder(tmp_path, data_dir):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text('#!/usr/bin/env bash\necho "curl: (6) Could not resolve host" >&2\nexit 6\n')
    (bin_dir / "curl").chmod(0o755)
    env = dict(os.environ, DATA_DIR=str(data_dir), DATA_ZIP_URL="https://data.example.org/data.zip",
               PYTHON=sys.executable, PATH=os.pathsep.join([str(bin_dir), os.environ["PATH"]]))
    result = subprocess.run(["bash", str(DOWNLOAD_DATA)], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "data.example.org cannot be reached: its name does not resolve" in result.stderr
    assert "DATA_ZIP_URL=/path/to/data.zip" in result.stderr and "resume" not in result.stderr
    assert not (data_dir / ".download").exists()


# ----------------------------------------------------------------------------- download_raw_data.sh

FAKE_CURL = """#!/usr/bin/env bash
# fake curl: serve "$FAKE_WEB/<last part of the URL>", log each request; only -o and the URL matter
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift 2 ;; -C|--retry) shift 2 ;; -*) shift ;; *) url="$1"; shift ;; esac
done
echo "$url" >> "$FAKE_WEB/requests.log"
src="$FAKE_WEB/$(basename "$url")"
[ -f "$src" ] || { echo "curl: (22) 404 $url" >&2; exit 22; }
cp "$src" "$out"
"""


def fake_web(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    web.mkdir()
    for name in ["SQuAD", "NewsQA", "TriviaQA-web", "SearchQA", "HotpotQA", "NaturalQuestionsShort"]:
        (web / f"{name}.jsonl.gz").write_bytes(gzip.compress(b'{"header": {}}\n'))
    for name in ["squad", "newsqa", "triviaqa", "searchqa", "hotpot", "naturalqa"]:
        (web / f"inhouse_split_{name}.json").write_text('{"dev": [0], "test": []}')
    with tarfile.open(web / "data.tar", "w") as tar:
        for split in ("dev", "val", "test"):
            body = b"q,a,b,c,d,A\n"
            info = tarfile.TarInfo(f"data/{split}/professional_medicine_{split}.csv")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with tarfile.open(web / "data_generation.tar.gz", "w:gz") as tar:
        body = b"BLURB data generation\n"
        info = tarfile.TarInfo("data_generation/README.md")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(FAKE_CURL)
    (bin_dir / "curl").chmod(0o755)
    return web


def run_raw(tmp_path: Path, web: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAW_DIR=str(tmp_path / "raw_data"), FAKE_WEB=str(web),
               # the fake curl first; python3 straight from this interpreter's folder (fast start)
               PATH=os.pathsep.join([str(tmp_path / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]]))
    return subprocess.run(["bash", str(DOWNLOAD_RAW)], env=env, capture_output=True, text=True)


def test_download_raw_data_layout_and_rerun(tmp_path):
    web = fake_web(tmp_path)
    result = run_raw(tmp_path, web)
    assert result.returncode == 0, result.stderr
    raw = tmp_path / "raw_data"
    for split in ("train", "dev"):  # saved under the original release's names
        names = sorted(p.name for p in (raw / "mrqa" / split).iterdir())
        assert names == sorted(f"{n}.jsonl.gz" for n in
                               ["SQuAD", "NewsQA", "TriviaQA", "SearchQA", "HotpotQA", "NaturalQuestions"])
    assert len(list((raw / "mrqa" / "inhouse_splits").glob("inhouse_split_*.json"))) == 6
    assert (raw / "mmlu" / "data" / "test" / "professional_medicine_test.csv").is_file()
    assert (raw / "blurb" / "data_generation" / "README.md").is_file()
    assert "MedQA-USMLE" in result.stdout and "data_clean.zip" in result.stdout
    requests = (web / "requests.log").read_text().splitlines()
    assert "https://s3.us-east-2.amazonaws.com/mrqa/release/v2/dev/TriviaQA-web.jsonl.gz" in requests
    assert ("https://raw.githubusercontent.com/michiyasunaga/LinkBERT/main/scripts/inhouse_splits/"
            "inhouse_split_hotpot.json") in requests
    # a re-run downloads nothing
    (web / "requests.log").unlink()
    again = run_raw(tmp_path, web)
    assert again.returncode == 0, again.stderr
    assert not (web / "requests.log").exists()


def test_download_raw_data_reports_failures_and_keeps_going(tmp_path):
    web = fake_web(tmp_path)
    (web / "SearchQA.jsonl.gz").unlink()
    (web / "inhouse_split_squad.json").write_text('{"dev": [0')  # corrupt download
    result = run_raw(tmp_path, web)
    assert result.returncode == 1
    assert "3 step(s) failed" in result.stderr  # SearchQA train + dev, the corrupt split file
    assert not (tmp_path / "raw_data" / "mrqa" / "inhouse_splits" / "inhouse_split_squad.json").exists()
    assert (tmp_path / "raw_data" / "mmlu" / "data" / "dev").is_dir()  # the rest still came
