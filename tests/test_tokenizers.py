"""CLIP BPE tokenizer identical to open_clip's SimpleTokenizer; HF tokenizer identical to open_clip's wrapper."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyclip.tokenizers import CLIPTokenizer, HFTokenizer

HARD_CASES = [
    "", " ", "   \t\n  ", "a", "A photo of a CAT.", "it's 'S 're 've 'm 'll 'd", "'''ll",
    "emoji 🐈‍⬛🏳️‍🌈👍🏽", "日本語のテキスト", "中文 测试", "한국어", "العربية نص", "עברית", "हिन्दी",
    "e\u0301 combining é", "Ã© mojibake Ã¼ber", "&amp; &lt;b&gt; &amp;amp; &#39;quote&#39; &nbsp;x",
    "a\x00b\x01c\x7fd\x1be[0m", "tabs\tand\nnewlines\r\nand\x0bvt\x0cff\x1cfs", "ﬁ ﬂ ligatures", "ＦＵＬＬ ｗｉｄｔｈ",
    "<start_of_text>", "<end_of_text> after", "x<<start_of_text>", "<START_OF_TEXT>", "1234567890 3.14",
    "supercalifragilisticexpialidocious" * 3, "a" * 500, "ſ 'ſ İstanbul ß", "\u2028line\u2029para",
    "“curly” ‘quotes’ — dashes…", "x" * 10_000, "word " * 200, "¡¿ ÿ ¬ ® ©", "\ud7ff\ue000", "caf\xe9 na\xefve",
]


@pytest.fixture(scope="module")
def tokenizers():
    from open_clip.tokenizer import SimpleTokenizer
    return CLIPTokenizer(), SimpleTokenizer()


def _same(ours, ref, texts, context_length=None):
    got = ours(texts, context_length=context_length)
    want = ref(texts, context_length=context_length).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want, err_msg=repr(texts))


@pytest.mark.parametrize("context_length", [77, 32, 5, 2])
def test_hard_cases_identical(tokenizers, context_length):
    _same(*tokenizers, HARD_CASES, context_length)


_TEXT = st.one_of(
    st.text(max_size=60),  # any unicode
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120),  # ASCII fast path
    st.text(alphabet="aAbB &;#<>_'sSdlmrvt0129.,!?\t\n\r", max_size=80),  # entities, contractions, markup
    st.lists(st.sampled_from(["a", "photo", "of", "the", "Dog's", "&amp;", "é", "🐈", "日本", "—", "''"]),
             max_size=30).map(" ".join),
)


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=_TEXT)
def test_identical_on_generated_corpus(tokenizers, text):
    ours, ref = tokenizers
    assert ours.encode(text) == ref.encode(text), repr(text)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(texts=st.lists(_TEXT, min_size=1, max_size=12), context_length=st.sampled_from([77, 16, 3]))
def test_identical_in_batches(tokenizers, texts, context_length):
    _same(*tokenizers, texts, context_length)


def test_decode_round_trip(tokenizers):
    ours, ref = tokenizers
    for text in ["a photo of a cat", "Hello, World! it's 3 o'clock", "日本語 🐈", ""]:
        ids = ours([text])[0]
        want = ref.decode(ref([text])[0].tolist()).replace("<start_of_text>", "").split("<end_of_text>")[0].strip()
        assert ours.decode(ids) == want
    assert ours.batch_decode(ours(["a b", "c"])) == ["a b", "c"]


def test_bad_input(tokenizers):
    ours, _ = tokenizers
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        ours(["ok", 3])
    with pytest.raises(TypeError, match="bytes"):
        ours.encode(b"bytes")
    with pytest.raises(ValueError, match="context_length"):
        CLIPTokenizer(context_length=1)
    assert ours("single").shape == (1, 77)
    assert ours([]).shape == (0, 77)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertTokenizerFast
    folder = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "cat", "dog", "##s", "!",
             ",", ".", "is", "on", "mat", "big", "red", "car", "##ing", "run", "'", "x"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kwargs", [dict(strip_sep_token=True, context_length=32), dict(context_length=8),
                                    dict(clean="lower"), dict(clean="canonicalize", context_length=16)])
def test_hf_tokenizer_matches_open_clip(bert_dir, kwargs, monkeypatch):
    from open_clip.tokenizer import HFTokenizer as RefHF
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["a photo of the cat", "The DOGS running on the mat!", "", "a big, red car.  x " * 6,
             "unknown wörds &amp; stuff", "Cat_photo: the_dog"]
    ours = HFTokenizer(bert_dir, **kwargs)
    ref = RefHF(bert_dir, **kwargs)
    np.testing.assert_array_equal(ours(texts), ref(texts).numpy())
    assert ours(texts).dtype == np.int32


def test_hf_tokenizer_errors(bert_dir):
    with pytest.raises(ValueError, match="clean must be one of"):
        HFTokenizer(bert_dir, clean="bogus")
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        HFTokenizer(bert_dir)([None])
    with pytest.raises(ValueError, match="no source-language setting"):
        HFTokenizer(bert_dir, language="fra_Latn")
