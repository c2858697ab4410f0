"""sentencepiece tokenizer training, conversion to a fast tokenizer, and ``mmssl tokenizer train``."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from mmssl.cli import main
from mmssl.modalities.tokenizer import SPECIAL_TOKENS, train_tokenizer

WORDS = ("the market rose sharply after news of the merger while oil prices fell and "
         "investors sold shares of technology companies in tokyo london and new york").split()


def corpus(n: int = 1500, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) for _ in range(n)]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def trained(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"tok_{request.param}")
    tokenizer = train_tokenizer(corpus(), out, vocab_size=120, model_type=request.param)
    return out, tokenizer


def test_special_tokens_have_fixed_ids_and_bert_post_processing(trained):
    _, tokenizer = trained
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id,
            tokenizer.sep_token_id, tokenizer.mask_token_id) == (0, 1, 2, 3, 4)
    ids = tokenizer("oil prices fell")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and not {0, 1, 4} & set(ids[1:-1])
    pair = tokenizer("oil prices", "fell")
    assert pair["input_ids"].count(3) == 2 and pair["token_type_ids"][-1] == 1


def test_round_trip_and_autotokenizer_loading_give_the_same_ids(trained):
    out, tokenizer = trained
    loaded = AutoTokenizer.from_pretrained(out)
    assert (out / "tokenizer.json").is_file() and (out / "spm.model").is_file()
    assert len(loaded) == len(tokenizer) <= 120
    for text in corpus(20, seed=1):
        ids = loaded(text)["input_ids"]
        assert ids == tokenizer(text)["input_ids"]
        assert loaded.decode(ids, skip_special_tokens=True) == text


def test_fast_tokenizer_gives_sentencepiece_ids_whatever_the_whitespace(trained):
    out, tokenizer = trained
    processor = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    texts = [*corpus(50, seed=5), "oil prices fell ", "  oil prices fell", "oil  prices \t fell\n",
             "oil prices fell\u00a0", " ", "oil ＰＲＩＣＥＳ fell"]
    for text in texts:
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == processor.encode(text), repr(text)


def test_literal_special_token_text_is_not_a_learned_piece(trained):
    _, tokenizer = trained
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert pieces.count("[MASK]") == 1 and pieces.count("[CLS]") == 1


def test_rare_ascii_characters_are_not_unknown(tmp_path):
    # one "Zurich?" in ~100k characters: below sentencepiece's 0.9995 character coverage
    tokenizer = train_tokenizer([*corpus(), "oil prices in Zurich?"], tmp_path, vocab_size=300)
    ids = tokenizer("Zurich! XYZ? {~}")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Zurich! XYZ? {~}"


def test_lowercase_folds_case_at_encoding_time(tmp_path):
    tokenizer = train_tokenizer(corpus(300), tmp_path, vocab_size=80, lowercase=True)
    assert tokenizer("Oil PRICES fell")["input_ids"] == tokenizer("oil prices fell")["input_ids"]


def test_bad_arguments_and_empty_corpus_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer(["", "   ", None], tmp_path)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(corpus(10), tmp_path, vocab_size=5)
    with pytest.raises(ValueError, match="model_type"):
        train_tokenizer(corpus(10), tmp_path, model_type="wordpiece")


def test_cli_trains_from_a_parquet_column(tmp_path, capsys):
    data = tmp_path / "news.parquet"
    pq.write_table(pa.table({"body": corpus(400), "label": [0] * 400}), data)
    out = tmp_path / "tok"
    code = main(["tokenizer", "train", "--data", str(data), "--column", "body",
                 "--vocab-size", "90", "--model", "bpe", "--out", str(out)])
    assert code == 0
    assert f"data.text.tokenizer={out}" in capsys.readouterr().out
    loaded = AutoTokenizer.from_pretrained(out)
    assert len(loaded) <= 90 and loaded.mask_token == "[MASK]"


def test_cli_names_the_unknown_format(tmp_path, capsys):
    code = main(["tokenizer", "train", "--data", str(tmp_path / "x.docx"), "--out", str(tmp_path)])
    assert code == 2
    assert "cannot tell the format" in capsys.readouterr().err


def test_cli_trains_from_a_column_of_caption_lists(tmp_path, capsys):
    """flickr8k-style data: each row holds a list of captions; every caption is a text."""
    captions = [[f"a dog runs {w}", f"the {w} dog jumps"] for w in corpus(200)]
    data = tmp_path / "captions.parquet"
    pq.write_table(pa.table({"captions": captions}), data)
    out = tmp_path / "tok"
    code = main(["tokenizer", "train", "--data", str(data), "--column", "captions",
                 "--vocab-size", "100", "--lowercase", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    loaded = AutoTokenizer.from_pretrained(out)
    assert loaded.unk_token_id not in loaded("the dog jumps after news")["input_ids"]


def test_a_failed_training_leaves_no_folder(tmp_path):
    def texts():
        yield from corpus(50)
        raise RuntimeError("the data went away")

    out = tmp_path / "tok"
    with pytest.raises(RuntimeError, match="went away"):
        train_tokenizer(texts(), out, vocab_size=60)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="must be strings, got a int"):
        train_tokenizer(["a text", 3], out, vocab_size=60)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_tokenizer_folder_is_named_as_such(tmp_path):
    from mmssl.modalities.text import load_tokenizer
    from mmssl.recipe import TextConfig

    with pytest.raises(FileNotFoundError, match="holds no tokenizer") as err:
        load_tokenizer(TextConfig(tokenizer=str(tmp_path)))
    assert "sentencepiece" not in str(err.value)
