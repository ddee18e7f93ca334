"""The knowledge world as a training task: packing, the QA split, the batch mix, exposures,
fine-tuning from a pretrained run (full and LoRA), and a tiny mixed-training run that learns QA."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lmphys import config as config_lib
from lmphys.errors import ConfigError
from lmphys.models import transformer
from lmphys.train import loop, lora, run_config, runs, step as step_lib
from lmphys.worlds import bio
from lmphys.worlds.base import ModelFns
from lmphys.worlds.bio import pack
from lmphys.worlds.bio.manipulation import manipulation_pairs


CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def _task_config(**changes) -> ml_collections.ConfigDict:
    task = bio.default_config()
    task.people, task.batch_size, task.seq_len, task.eval_people = 40, 8, 96, 8
    for name, value in changes.items():
        task[name] = value
    return task


def test_packing_keeps_documents_whole_and_targets_only_answers():
    flat, offsets, loss_from = pack.concat_documents(
        [(np.array([10, 11]), np.array([20, 21, 22])), (np.array([12]), np.array([23])), (np.array([13, 14, 15]), np.array([24]))]
    )
    rows = pack.pack(flat, offsets, seq_len=9, seed=0, bos_id=1, eos_id=2, pad_id=0, loss_from=loss_from)
    assert rows.tokens.shape[1] == 10
    found = []
    for tokens, targets in zip(rows.tokens, rows.is_target):
        for start in np.flatnonzero(tokens == 1):
            end = start + np.flatnonzero(tokens[start:] == 2)[0]
            document = tokens[start + 1:end].tolist()
            found.append(document)
            # targets: the answer tokens and the eos, never the question, bos or padding
            answer = [t for t in document if t >= 20]
            assert tokens[start:end + 1][targets[start:end + 1]].tolist() == answer + [2]
        assert not targets[tokens == 0].any()
    assert sorted(found) == sorted([[10, 11, 20, 21, 22], [12, 23], [13, 14, 15, 24]])
    with pytest.raises(ConfigError, match="task.seq_len = 4 is too short"):
        pack.pack(flat, offsets, seq_len=4, seed=0, bos_id=1, eos_id=2, pad_id=0)


def test_rows_are_drawn_with_the_configured_shares():
    pools = [pack.Rows(np.full((3, 5), 7, np.int32), np.ones((3, 5), bool)),
             pack.Rows(np.full((2, 5), 9, np.int32), np.ones((2, 5), bool))]
    data = pack.device_data(pools)
    tokens, _ = pack.draw_rows(jax.random.key(0), data, (0.2, 0.8), 4000)
    share = float((np.asarray(tokens)[:, 0] == 9).mean())
    assert abs(share - 0.8) < 0.03


def test_tested_people_never_have_qa_in_training():
    task = bio.BioTask(_task_config(qa_fraction=0.5))
    tok = task.tokenizer
    assert set(task.qa_train).isdisjoint(task.qa_test) and len(task.qa_train) + len(task.qa_test) == 40
    qa_rows = task.pools[1].tokens
    bio_rows = task.pools[0].tokens
    text_qa = " ".join(tok.decode(row[row > 0].tolist()) for row in qa_rows)
    text_bios = " ".join(tok.decode(row[row > 0].tolist()) for row in bio_rows)
    for person in task.qa_test:
        name = task.people.full_name(int(person))
        assert name not in text_qa and name in text_bios
    for person in task.qa_train:
        assert task.people.full_name(int(person)) in text_qa


def test_exposures_set_the_number_of_steps():
    task = bio.BioTask(_task_config(exposures=50, augmentation="multi5"))
    steps = task.train_steps(7)
    # Draw every batch of the run: the biographies seen, over the people, is the exposure count.
    tokens, _ = pack.draw_rows(jax.random.key(0), task.data, task.shares, steps * task.batch_size)
    biographies_seen = int((np.asarray(tokens) == task.bos_id).sum())
    assert biographies_seen / 40 == pytest.approx(50, rel=0.05)
    assert bio.BioTask(_task_config()).train_steps(7) == 7


def test_reverse_adds_a_reversed_twin_per_biography_seen_as_often_as_the_forward_ones():
    plain = bio.BioTask(_task_config(exposures=50, augmentation="multi5"))
    task = bio.BioTask(_task_config(exposures=50, augmentation="multi5", reverse=True))
    # The forward biographies keep their 50 exposures and their twins get as many: twice the steps.
    steps = task.train_steps(7)
    assert steps == pytest.approx(2 * plain.train_steps(7), rel=0.05)
    tokens, _ = pack.draw_rows(jax.random.key(0), task.data, task.shares, steps * task.batch_size)
    tokens = np.asarray(tokens)
    assert int((tokens == task.bos_id).sum()) / 40 == pytest.approx(100, rel=0.05)
    # Twins are in the rows: a name right before a sentence's "." happens only in reversed text.
    period = task.tokenizer.id(".")
    name = task.tokenizer.encode(task.people.full_name(0))
    windows = np.lib.stride_tricks.sliding_window_view(tokens, 4, axis=1)
    assert (windows == np.array(name + [period])).all(axis=2).any()
    with pytest.raises(ConfigError, match="task.reverse"):
        bio.validate(_task_config(world="biod", reverse=True))
    # At paper scale (fixed steps) the config doubles the steps for the same reason.
    manipulation_config = os.path.join(CONFIGS, "bio", "manipulation.py")
    paper_steps = {arg: config_lib.load_config_file(manipulation_config, arg).train.steps
                   for arg in ("inverse_birth,plain,paper", "inverse_birth,plain,paper,reverse")}
    assert paper_steps["inverse_birth,plain,paper,reverse"] == 2 * paper_steps["inverse_birth,plain,paper"]
    # A run saved before the field existed still loads, without twins.
    older = ml_collections.ConfigDict({k: v for k, v in _task_config(exposures=50, augmentation="multi5").items()
                                       if k != "reverse"})
    bio.validate(older)
    assert bio.BioTask(older).bio_rows == plain.bio_rows < task.bio_rows


def test_bad_task_fields_are_named():
    config = config_lib.load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "bio", "small.py"))
    config.task.augmentation = "multi7"
    with pytest.raises(ConfigError, match="task.augmentation = 'multi7' is invalid"):
        run_config.validate(config)
    config.task.augmentation = "single"
    config.task.qa_fraction = 0.5
    config.task.junk_fraction = 0.7
    with pytest.raises(ConfigError, match="task.junk_fraction"):
        run_config.validate(config)
    config.task.junk_fraction = 0.0
    config.lora.embedding_rank = 4
    with pytest.raises(ConfigError, match="set init_from"):
        run_config.validate(config)


def test_lora_starts_at_the_base_model_and_adds_low_rank_updates():
    params = transformer.init_model(_tiny_model_cfg(), jax.random.key(0))[1]
    factors = lora.init(params, jax.random.key(1), embedding_rank=2, attention_rank=3)
    merged = lora.merge(params, factors)
    for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    keys = iter(jax.random.split(jax.random.key(2), 8))
    moved = {name: (a, jax.random.normal(next(keys), b.shape)) for name, (a, b) in factors.items()}  # B off zero
    merged = lora.merge(params, moved)
    embedding_delta = merged["token_embed"]["embedding"] - params["token_embed"]["embedding"]
    assert np.linalg.matrix_rank(np.asarray(embedding_delta), tol=1e-5) == 2
    qkv_delta = np.asarray(merged["stack"]["blocks"]["attention"]["qkv"]["kernel"] - params["stack"]["blocks"]["attention"]["qkv"]["kernel"])
    width = qkv_delta.shape[1]
    assert np.linalg.matrix_rank(qkv_delta[0, :, :width], tol=1e-5) == 3  # query
    np.testing.assert_array_equal(qkv_delta[:, :, width:2 * width], 0)  # keys untouched
    assert np.linalg.matrix_rank(qkv_delta[0, :, 2 * width:], tol=1e-5) == 3  # value
    fresh = transformer.init_model(_tiny_model_cfg(), jax.random.key(0))[1]
    np.testing.assert_array_equal(np.asarray(params["token_embed"]["embedding"]), np.asarray(fresh["token_embed"]["embedding"]))


def _tiny_model_cfg():
    config = _run_config("/unused")
    return transformer.ModelConfig.from_config(config.model, vocab_size=bio.tokenizer().vocab_size)


def _run_config(workdir: str, **task_changes) -> ml_collections.ConfigDict:
    config = config_lib.load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "default.py"))
    config.workdir = workdir
    config.task = _task_config(people=12, batch_size=16, seq_len=96, eval_people=6, **task_changes)
    config.model.num_layers, config.model.num_heads, config.model.width, config.model.max_len = 2, 2, 64, 96
    config.optim.learning_rate, config.optim.warmup_steps = 3e-3, 20
    config.train.steps, config.train.eval_every, config.train.checkpoint_every = 300, 300, 300
    config.train.log_every_seconds = 1e9
    config.parallel.data = 1
    return config


@pytest.mark.slow
def test_tiny_mixed_training_answers_training_half_questions(tmp_path):
    config = _run_config(str(tmp_path / "mixed"), qa_fraction=0.5)
    config.train.steps = config.train.eval_every = config.train.checkpoint_every = 120
    config.optim.learning_rate = 5e-3
    summary = loop.run(config, log=lambda line: None)
    accuracy = summary.eval_metrics["qa_train"]
    # chance for an exact-match answer is below 1% (the least varied attribute has 100 values)
    assert accuracy > 0.3, summary.eval_metrics
    _check_generate_shows_answers_beside_the_truth(config, summary.eval_metrics)


def _check_generate_shows_answers_beside_the_truth(config, metrics):
    """scripts/generate.py on the trained run: 2 people of each half, each of their six answers beside
    the truth from the people table, and the run's own accuracy per attribute and half."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(repo, "scripts", "generate.py"), f"--workdir={config.workdir}",
                             "--count=2"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": repo})  # this checkout's lmphys, not an installed one
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == f"{config.workdir} at step 120 (bioS 12 people): greedy answers, 2 people of each half"
    task = runs.build_task(config)
    names = {task.people.full_name(person): person for person in range(12)}
    shown = {"train": [], "test": []}
    for index, line in enumerate(lines):
        if not line.startswith("--- "):
            continue
        half = "train" if line.startswith("--- QA-trained half: ") else "test"
        assert half == "train" or line.startswith("--- held-out half")
        person = names[line.rsplit(": ", 1)[1]]
        shown[half].append(person)
        for attribute, answer_line in zip(bio.ATTRIBUTES, lines[index + 1:index + 7]):
            said_attribute, rest = answer_line.split(maxsplit=1)
            answer, truth_and_verdict = rest.removeprefix("model: ").split("  | truth: ")
            truth, verdict = truth_and_verdict.rsplit("  ", 1)
            assert said_attribute == attribute and truth == task.people.value(person, attribute)
            assert verdict == ("(right)" if answer == truth else "(wrong)")
    assert shown == {half: list(persons[:2]) for half, persons in task.eval_persons.items()}
    assert set(shown["train"]) <= set(task.qa_train) and set(shown["test"]) <= set(task.qa_test)
    table = {line.split(" | ")[0].removeprefix("| "): line.strip("| ").split(" | ")[1:] for line in lines[-7:]}
    assert lines[-9] == "| attribute | QA-trained half (6 people) | held-out half (6 people) |"
    for attribute in (*bio.ATTRIBUTES, "all"):
        suffix = "" if attribute == "all" else f"_{attribute}"
        assert table[attribute] == [f"{metrics['qa_train' + suffix]:.3f}", f"{metrics['qa_test' + suffix]:.3f}"]


@pytest.mark.slow
def test_generate_asks_a_manipulation_run_its_own_kind_of_question(tmp_path):
    config = _run_config(str(tmp_path / "manip"), qa_fraction=0.5, qa_kind="classify_month_2", qa_cot=True)
    config.train.steps = config.train.eval_every = config.train.checkpoint_every = 30
    metrics = loop.run(config, log=lambda line: None).eval_metrics
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(repo, "scripts", "generate.py"), f"--workdir={config.workdir}",
                             "--count=2"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": repo})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == (f"{config.workdir} at step 30 (bioS 12 people, classify_month_2 with CoT questions): "
                        "greedy answers, 2 of each half")
    task = runs.build_task(config)
    for half, header in (("train", "--- QA-trained half"), ("test", "--- held-out half")):
        first = next(i for i, line in enumerate(lines) if line.startswith(header))
        expected = manipulation_pairs(task.people, "classify_month_2", task.eval_persons[half],
                                      task.config.world_seed + 1, True)[:2]
        for k, qa in enumerate(expected):
            question, model_line, truth_line = lines[first + 1 + 3 * k:first + 4 + 3 * k]
            assert question.strip() == qa.question and model_line.startswith("    model: ")
            assert truth_line.startswith(f"    truth: {qa.answer}  (")
    assert lines[-4] == "| classify_month_2 | QA-trained half (6 questions) | held-out half (6 questions) |"
    assert lines[-2] == f"| whole answer | {metrics['manip_train']:.3f} | {metrics['manip_test']:.3f} |"
    assert lines[-1] == f"| final answer | {metrics['manip_train_final']:.3f} | {metrics['manip_test_final']:.3f} |"


@pytest.mark.slow
def test_fine_tuning_starts_from_the_pretrained_run_and_lora_freezes_it(tmp_path):
    pretrain = _run_config(str(tmp_path / "pre"), exposures=2)
    pretrain.train.steps = 4  # replaced by what exposures need, and the run says so
    said = []
    pretrained = loop.run(pretrain, log=said.append)
    steps = runs.build_task(pretrain).train_steps(4)
    assert steps != 4 and int(pretrained.state["step"]) == steps
    assert [line for line in said if "train.steps" in line] == [
        f"{pretrain.workdir}: train.steps = {steps}, set by task.exposures = 2; the config's train.steps = 4 is not used"]
    tune = _run_config(str(tmp_path / "tune"), qa_fraction=1.0)
    tune.init_from, tune.train.steps = str(tmp_path / "pre"), 3
    tune.lora.embedding_rank, tune.lora.attention_rank = 2, 2
    summary = loop.run(tune, log=lambda line: None)
    state = summary.state
    assert set(state["params"]) == {"embedding", "query", "value"}
    for a, b in zip(jax.tree.leaves(state["frozen"]), jax.tree.leaves(pretrained.state["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.abs(state["params"]["embedding"][1]).sum()) > 0  # B moved off zero
    restored = runs.load_trained(str(tmp_path / "tune"))
    expected = step_lib.model_params(jax.device_get(state))
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    mismatched = _run_config(str(tmp_path / "bad"), qa_fraction=1.0)
    mismatched.init_from, mismatched.model.width = str(tmp_path / "pre"), 32
    with pytest.raises(Exception, match="parameter shapes differ"):
        loop.run(mismatched, log=lambda line: None)


@pytest.mark.parametrize("file, arg", [
    ("small.py", "mixed,multi5_permute"), ("small.py", "bert,fullname"), ("paper.py", "pretrain,permute5"),
    ("manipulation.py", "inverse_birth,plain"), ("manipulation.py", "compare_birth,cot,paper"),
    ("manipulation.py", "inverse_birth,cot,small,reverse"),
    ("capacity.py", "bios,1000,junk_domain"), ("capacity.py", "biod,100"),
])
def test_every_knowledge_config_argument_is_valid(file, arg):
    run_config.validate(config_lib.load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "bio", file), arg))
    with pytest.raises(ConfigError, match="is invalid"):
        config_lib.load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "bio", file), "nonsense,1")


def _capacity_config(arg: str, people: int = 40) -> ml_collections.ConfigDict:
    """configs/bio/capacity.py:<arg> for `people` people, the task fields that follow the people set
    as configs/sweeps/part3_capacity.py sets them."""
    config = config_lib.load_config_file(os.path.join(CONFIGS, "bio", "capacity.py"), arg)
    sweep = config_lib.load_config_file(os.path.join(CONFIGS, "sweeps", "part3_capacity.py"), arg)
    case = sweep.cases[0]["task"]  # the sweep's smallest world, scaled to `people`
    config.task.people = people
    config.task.renderings = min(case["renderings"] * case["people"] // people, config.task.exposures)
    if config.task.junk_fraction:
        config.task.junk_people = round(case["junk_people"] / case["people"] * people)
    config.task.eval_people = 8
    return config


def _first_packing_texts(task) -> list[str]:
    """Every biography of the task's first packing of its biography pool, decoded."""
    texts = []
    for row in task.pools[0].tokens[:task.bio_rows]:
        for start in np.flatnonzero(row == task.bos_id):
            end = start + np.flatnonzero(row[start:] == task.eos_id)[0]
            texts.append(task.tokenizer.decode(row[start + 1:end].tolist()))
    return texts


def test_capacity_config_renders_each_person_afresh_for_every_exposure():
    config = _capacity_config("bios,20")
    assert config.task.renderings == 20
    task = bio.BioTask(config.task)
    texts = _first_packing_texts(task)
    assert len(texts) == len(set(texts)) == 40 * 20  # 20 texts per person, no two alike
    for person in range(3):
        name = task.people.full_name(person)
        mine = [text for text in texts if name in text]
        assert len(mine) == 20
        # fresh templates, not one fixed set reordered: a fixed set gives at most 6 sentences (12
        # with the name or a pronoun as subject); 20 fresh draws from ~50 templates per attribute give ~100
        sentences = {sentence.strip() for text in mine for sentence in text.replace(name, "X").split(".")}
        assert len(sentences) > 60
    biod_config = _capacity_config("biod,30")
    biod_task = bio.BioTask(biod_config.task)
    assert int((biod_task.pools[0].tokens[:biod_task.bio_rows] == biod_task.bos_id).sum()) == 40 * 30
    # exposures still count sightings: the fewest steps whose rows hold 30 biographies of each person
    steps = biod_task.train_steps(1)
    sightings = lambda steps: steps * biod_task.batch_size * (40 * 30 / biod_task.bio_rows) / 40  # noqa: E731
    assert sightings(steps - 1) < 30 <= sightings(steps)
    with pytest.raises(ConfigError, match="task.renderings"):
        bio.BioTask(_task_config(renderings=10**6))


def test_capacity_junk_people_are_seen_a_twentieth_as_often_as_useful_ones():
    config = _capacity_config("bios,20,junk")
    task = bio.BioTask(config.task)
    # a row of pool p is drawn with probability shares[p] / its rows; each row holds its documents' sightings
    useful, junk = task.pools
    per_useful = task.shares[0] * (useful.tokens == task.bos_id).sum() / len(useful.tokens) / config.task.people
    per_junk = task.shares[1] * (junk.tokens == task.bos_id).sum() / len(junk.tokens) / config.task.junk_people
    assert per_junk / per_useful == pytest.approx(1 / 20, rel=0.1)  # the config's comment: 1/20 as often
    assert task.shares[1] == 7 / 8  # the paper's 1:7 useful:junk


def test_junk_rows_are_mixed_in_and_only_useful_biographies_carry_the_domain_token():
    task = bio.BioTask(_task_config(junk_fraction=0.5, junk_people=60, domain_token=True))
    useful_id = task.tokenizer.id("<useful>")
    useful, junk = task.pools
    after_bos = useful.tokens[:, 1:][useful.tokens[:, :-1] == task.bos_id]
    assert (after_bos == useful_id).all()
    assert not (junk.tokens == useful_id).any() and not useful.is_target[useful.tokens == useful_id].any()
    tokens, _ = pack.draw_rows(jax.random.key(1), task.data, task.shares, 2000)
    assert abs(float((np.asarray(tokens) == useful_id).any(axis=1).mean()) - 0.5) < 0.05


def test_each_document_is_packed_after_many_different_neighbours():
    # 30 one-token documents; one packing always puts document 5 after the same neighbour
    flat, offsets = np.arange(10, 40, dtype=np.int32), np.arange(31)
    one = len(pack.pack(flat, offsets, seq_len=11, seed=0, bos_id=1, eos_id=2, pad_id=0))
    rows, per_packing = pack.pack_several(flat, offsets, budget_tokens=8 * one * 12, most=64, seed=3, seq_len=11,
                                              bos_id=1, eos_id=2, pad_id=0)
    assert per_packing == one and len(rows) == 8 * one  # the budget holds exactly 8 packings
    before = set()
    for row in rows.tokens:
        where = np.flatnonzero(row == 15)
        if len(where) and where[0] >= 3:
            before.add(int(row[where[0] - 3]))  # the document before: bos, doc, eos, bos, 15
    assert len(before) >= 4
    assert sorted(rows.tokens[rows.tokens >= 10].tolist()) == sorted(np.repeat(flat, 8).tolist())


def _oracle(answers_by_question: dict, eos_id: int, wrong: bool = False):
    """A stand-in model that writes the known answer (or a wrong one) after each question."""

    def sample(prompts, lengths, key):
        rows = np.array(prompts)
        for row, length in zip(rows, np.asarray(lengths)):
            if length == 1:  # a filler row of the last chunk
                continue
            answer = list(answers_by_question[tuple(row[1:length].tolist())])
            if wrong:
                answer = answer[::-1] if len(answer) > 1 and answer[::-1] != answer else answer + answer
            written = (answer + [eos_id])[: len(row) - length]
            row[length:length + len(written)] = written
        return jnp.asarray(rows)

    return sample


@pytest.mark.parametrize("kind, cot", [("attributes", False), ("compare_birth", True), ("classify_month_6", False)])
def test_qa_evaluation_scores_a_perfect_model_1_and_a_wrong_one_0(kind, cot):
    task = bio.BioTask(_task_config(qa_kind=kind, qa_cot=cot, eval_people=10))
    tok = task.tokenizer
    persons = np.concatenate([task.qa_train, task.qa_test])
    if kind == "attributes":
        questions, answers, _ = bio.qa_tokens(task.people, persons)
        table = {tuple(q.tolist()): a.tolist() for q, a in zip(questions, answers)}
    else:
        table = {}
        for half in task._eval_sets.values():  # the people the evaluation asks about
            for pair in manipulation_pairs(task.people, kind, half, task.config.world_seed + 1, cot):
                table[tuple(tok.encode(pair.question))] = tok.encode(pair.answer)
    right = task.evaluate(ModelFns(sample=_oracle(table, task.eos_id), log_probs=None), jax.random.key(0))
    wrong = task.evaluate(ModelFns(sample=_oracle(table, task.eos_id, wrong=True), log_probs=None), jax.random.key(0))
    prefix = "qa" if kind == "attributes" else "manip"
    for half in ("train", "test"):
        assert right[f"{prefix}_{half}"] == 1.0 and wrong[f"{prefix}_{half}"] == 0.0
        if prefix == "manip":
            assert right[f"manip_{half}_final"] == 1.0
