"""Tokenizers: CLIPTokenizer gives open_clip SimpleTokenizer's ids; HFTokenizer gives open_clip HFTokenizer's."""

import inspect
import random
import sys
import threading

import numpy as np
import open_clip.tokenizer as open_clip_tokenizer
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyclip.tokenizers import CLIPTokenizer, HFTokenizer, SimpleTokenizer

CONTEXT_LENGTHS = (77, 32, 5)

HARD_CASES = [
    # empty, white space only, trivial
    "", " ", "   ", "\t\n\r\n ", "\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000", "a", "A", ".",
    # ordinary prompts, mixed case, digits, punctuation
    "a photo of a cat.", "A Photo Of A CAT!", "MiXeD cAsE wOrDs", "1234567890", "3.14159 and 2,718",
    "a photo of a {}.", "--- ... !!! ??? ;;;", "e-mail: someone@example.com, url: https://x.org/a?b=c#d",
    # contractions (the pattern is case-insensitive; "ſ" case-folds to "s")
    "it's they're we've I'm you'll he'd can't", "IT'S THEY'RE 'S 'T 'RE 'VE 'M 'LL 'D", "'''s ''t 'x",
    "dog's'", "ſ 'ſ İstanbul ß ẞ ΟΔΟΣ Kelvin:\u212a", "'ſtart", "rock'n'roll", "o'clock's",
    # special-token literals: matched only exactly, and before other words
    "<start_of_text>", "<end_of_text>", "<START_OF_TEXT> upper", "a<start_of_text>b", "x<<start_of_text>",
    "_<end_of_text>_", "<ſtart_of_text>", "<start_of_text><end_of_text>", "<start_of_text",
    # HTML entities (unescaped up to three times: ftfy, then html.unescape twice)
    "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt;", "&amp;amp;amp;amp;", "&#39;quoted&#39; &quot;q&quot;",
    "<b>&amp;</b>", "&nbsp;x&nbsp;", "&#10;line&#x0;", "&#xD800;", "&", "&&", "& amp;", "&notanentity;",
    # mojibake and other things ftfy fixes
    "Ã© cafÃ© Ã¼ber", "â€œquotedâ€\x9d", "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.",
    "ﬁ ﬂ ﬃ ligatures", "ＦＵＬＬ ｗｉｄｔｈ １２３", "“curly” ‘quotes’ — dashes… «guillemets»",
    "\x1b[31mred\x1b[0m", "c1 \x80\x85\x9f controls", "bom\ufeffhere", "zero\u200bwidth\u200djoiner",
    # control characters (ftfy deletes some; others become separators)
    "a\x00b\x01c\x7fd", "a\x0bb", "a\x1cb", "tabs\tand\nnewlines\r\nand\rcr", "x\x0cy",
    # scripts
    "日本語のテキスト", "中文 测试 漢字", "한국어 텍스트", "العربية نص", "עברית", "हिन्दी पाठ", "ไทย",
    "Ελληνικά", "Русский текст", "ქართული", "አማርኛ", "𝐁𝐨𝐥𝐝 𝕯𝖔𝖚𝖇𝖑𝖊", "Ⅻ ① ² ٣ ໓",
    # combining marks and composition
    "e\u0301 combining é", "a\u0300\u0301\u0302\u0303", "ǅ ǈ ǋ titlecase", "ﷺ", "\u0345",
    # emoji, flags, skin tones, ZWJ sequences, tags
    "emoji 🐈‍⬛🏳️‍🌈👍🏽", "🇯🇵🇺🇸", "🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f",
    "😀😃😄😁😆😅😂🤣", "❤️ ✈️ ☃",
    # unusual code points
    "\ue000 private use", "\U0010ffff\U000e0001", "\ufffd replacement", "\ud800 lone surrogate",
    "¡¿ ÿ ¬ ® © µ", "\xad soft hyphen",
    # long inputs
    "supercalifragilisticexpialidocious" * 3, "a" * 500, "x" * 10_000, "word " * 200,
    "antidisestablishmentarianism " * 50, "日本" * 3000,
]


@pytest.fixture(scope="module")
def ours():
    return CLIPTokenizer()


@pytest.fixture(scope="module")
def ref():
    return open_clip_tokenizer.SimpleTokenizer()


def _assert_same(ours, ref, texts, context_length):
    got = ours(texts, context_length=context_length)
    want = ref(texts, context_length=context_length).numpy()
    assert got.dtype == np.int32
    assert got.shape == want.shape
    if not np.array_equal(got, want):
        bad = next(i for i in range(len(want)) if not np.array_equal(got[i], want[i]))
        pytest.fail(f"context_length={context_length} text {texts[bad]!r}:\n ours {got[bad].tolist()}\n "
                    f"open_clip {want[bad].tolist()}")


@pytest.mark.parametrize("context_length", [*CONTEXT_LENGTHS, 2, 1])
def test_hard_cases_identical(ours, ref, context_length):
    _assert_same(ours, ref, HARD_CASES, context_length)
    for text in HARD_CASES:  # one text per call: results do not depend on the batch
        np.testing.assert_array_equal(ours(text, context_length), ref(text, context_length).numpy())


def _fixed_corpus(n=2500, seed=0):
    """A deterministic, varied corpus: prompts, captions, fragments of the hard cases, random unicode."""
    rng = random.Random(seed)
    words = ["a", "photo", "of", "the", "Dog's", "CAT", "it's", "I'M", "&amp;", "&lt;b&gt;", "é", "Ã©", "🐈",
             "日本", "—", "''", "3", "42nd", "x.y", "<start_of_text>", "ﬁsh", "ＡＢ", "نص", "e\u0301", "ſ",
             "\x00", "\t", "can't", "O'Neil", "über", "naïve", "1,000", "#1", "(a)", "[b]", "{c}"]
    seps = [" ", "  ", "", "\n", "\t", " \r\n", "_", "-"]
    corpus = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            text = rng.choice(["a photo of a {}.", "a bad photo of the {}.", "itap of my {}.", "{} in the wild",
                               "a {} on a table", "THE {}!!"]).format(rng.choice(words))
        elif kind == 1:
            text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 40)))
        elif kind == 2:
            source = rng.choice(HARD_CASES[:-6])
            a, b = sorted(rng.randrange(len(source) + 1) for _ in range(2))
            text = source[a:b] + rng.choice(seps) + rng.choice(words)
        elif kind == 3:
            text = "".join(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0, 0x7F), rng.randint(0xA0, 0x2FF),
                                           rng.randint(0x370, 0x9FFF), rng.randint(0x1F300, 0x1FAFF)]))
                           for _ in range(rng.randint(0, 30)))
        else:
            text = " ".join(rng.choice(words[:12]) for _ in range(rng.randint(60, 120)))  # long, truncated
        corpus.append(text)
    return corpus


@pytest.mark.parametrize("context_length", CONTEXT_LENGTHS)
def test_fixed_corpus_identical(ours, ref, context_length):
    corpus = _fixed_corpus()
    assert len(set(corpus)) >= 2000
    _assert_same(ours, ref, corpus, context_length)


_FRAGMENTS = ["&amp;", "&lt;", "&#39;", "&nbsp;", "<start_of_text>", "<end_of_text>", "'s", "'LL", "ſ", "Ã©",
              "â€™", "ﬁ", "Ａ", "\u0301", "\x1b[0m", "\r\n", "\x0b", "\x1c", "\x85", "\xa0", "İ", "🐈‍⬛"]
_TEXTS = st.one_of(
    st.text(max_size=40),  # any unicode but surrogates
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),  # plain ASCII
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60),  # ASCII with control characters
    # plain ASCII around one character from the edge of the shortcut (kept, deleted or white space?)
    st.builds("{}{}{}".format, st.text(alphabet="aB's ", max_size=6),
              st.sampled_from([chr(i) for i in range(0x80)] + ["\x85", "\xa0", "\u2028", "\ufeff", "é"]),
              st.text(alphabet="aB's ", max_size=6)),
    st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=40),  # Latin-1, mojibake-like
    st.text(alphabet=st.sampled_from("aAbBsStTdDlLmMrRvVeE &;#<>_'0129.,!?\t\n\r"), max_size=60),
    st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6)), max_size=12).map("".join),
)


def test_every_ascii_character_around_words(ours, ref):
    # Exhaustive at the edge of the plain-ASCII shortcut: which characters ftfy deletes, keeps, or turns
    # into white space, and how each joins or splits the words around it.
    texts = [template.format(chr(i)) for i in range(0x80) for template in
             ("a{}b", "it{}s", "{}", "A{}&amp;", "x {} y", "{}{}".format("{}", "\u00e9"))]
    texts += [t + c for t in ("a", "'") for c in ("\x85", "\xa0", "\u2028", "\u200b", "\ufeff", "\x1b[0m")]
    _assert_same(ours, ref, texts, 77)


@settings(max_examples=2000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=_TEXTS)
def test_generated_texts_identical(ours, ref, text):
    assert ours.encode(text) == ref.encode(text), repr(text)
    for context_length in CONTEXT_LENGTHS:
        np.testing.assert_array_equal(ours(text, context_length), ref(text, context_length).numpy(),
                                      err_msg=f"{text!r} context_length={context_length}")


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=st.lists(_TEXTS, max_size=10), context_length=st.sampled_from(CONTEXT_LENGTHS))
def test_generated_batches_identical(ours, ref, texts, context_length):
    if not texts:
        assert ours(texts, context_length).shape == (0, context_length)
        return
    _assert_same(ours, ref, texts, context_length)


@pytest.mark.parametrize("clean", ["whitespace", "canonicalize"])
def test_other_clean_options_identical(clean):
    ours = CLIPTokenizer(clean=clean)
    ref = open_clip_tokenizer.SimpleTokenizer(clean=clean)
    corpus = HARD_CASES + _fixed_corpus(300, seed=1)
    for context_length in CONTEXT_LENGTHS:
        _assert_same(ours, ref, corpus, context_length)


def test_memo_limits_and_threads(monkeypatch):
    # A tiny memo, emptied again and again, from several threads at once: still the same ids.
    import anyclip.tokenizers.clip_bpe as clip_bpe
    monkeypatch.setattr(clip_bpe, "_MAX_CACHE_ENTRIES", 16)
    corpus = _fixed_corpus(400, seed=2)
    want = open_clip_tokenizer.SimpleTokenizer()(corpus).numpy()
    tok = CLIPTokenizer()
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(3):
                results[k] = tok(corpus[k % 7:] + corpus[:k % 7])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, got in results.items():
        np.testing.assert_array_equal(got, np.roll(want, -(k % 7), axis=0))
    long_chunk = "y" * 1000
    assert tok.encode(long_chunk) == open_clip_tokenizer.SimpleTokenizer().encode(long_chunk)
    assert long_chunk not in tok._cache


def test_chunking_assumptions():
    # The per-chunk memo relies on: lower() never creates or removes white space, and every character
    # the word pattern treats as white space is white space for str.split().
    import regex
    space = regex.compile(r"\s")
    for cp in range(0x110000):
        c = chr(cp)
        lowered = c.lower()
        assert any(x.isspace() for x in lowered) == c.isspace(), hex(cp)
        if space.match(c):
            assert c.isspace(), hex(cp)


def test_properties(ours, ref):
    assert ours.vocab_size == ref.vocab_size == 49408
    assert (ours.sot_token_id, ours.eot_token_id, ours.pad_token_id) == (ref.sot_token_id, ref.eot_token_id, 0)
    assert ours.context_length == 77
    assert CLIPTokenizer(context_length=64)(["a"]).shape == (1, 64)
    assert SimpleTokenizer is CLIPTokenizer
    assert ours("a cat", context_length=0).shape == (1, 77)  # 0 / None: the tokenizer's own, as open_clip


def test_encode_and_decode_match_open_clip(ours, ref):
    texts = [t for t in HARD_CASES + _fixed_corpus(500, seed=3) if "_of_text>" not in t.lower()]
    for text in texts:
        ids = ours.encode(text)
        assert ids == ref.encode(text), repr(text)
        assert ours.decode(ids) == ref.decode(ids).strip(), repr(text)
        row = ours(text)[0]
        body = row[1:row.tolist().index(49407)].tolist()  # between start and end token (id 0 is "!")
        assert ours.decode(row) == ref.decode(body).strip(), repr(text)
    assert ours.decode([49406, 320, 1125, 539, 320, 2368, 49407, 0, 0]) == "a photo of a cat"
    assert ours.decode(np.array([[49406, 3306, 49407]])) == "hello"
    assert ours.decode([]) == ""
    assert ours.batch_decode(ours(["a b", "c", ""])) == ["a b", "c", ""]
    assert ours.encode("<start_of_text>x<end_of_text>") == [49406, 343, 49407]
    assert ours.decode([343, 49407, 344]) == "x"  # stops at the end token


def test_bad_input(ours):
    with pytest.raises(TypeError, match=r"texts\[1\] must be str, got int"):
        ours(["ok", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str, got bytes"):
        ours([b"bytes"])
    with pytest.raises(TypeError, match="got NoneType"):
        ours(None)
    with pytest.raises(TypeError, match="got bytes"):
        ours(b"bytes")
    with pytest.raises(TypeError, match="text must be str"):
        ours.encode(["a list"])
    with pytest.raises(ValueError, match="context_length"):
        ours("a", context_length=-3)
    with pytest.raises(ValueError, match="context_length"):
        ours("a", context_length=2.5)
    with pytest.raises(ValueError, match="context_length"):
        CLIPTokenizer(context_length=-1)
    with pytest.raises(ValueError, match="clean must be one of"):
        CLIPTokenizer(clean="bogus")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours.decode([49408])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours.decode([-1])
    # accepted inputs
    assert ours("single").shape == (1, 77)
    assert ours([]).shape == (0, 77)
    assert ours(("a", "b")).shape == (2, 77)
    assert ours(t for t in ["a", "b", "c"]).shape == (3, 77)
    np.testing.assert_array_equal(ours(np.array(["a cat", "dog"])), ours(["a cat", "dog"]))
    assert ours("").tolist() == [[49406, 49407] + [0] * 75]


# ---------------------------------------------------------------------- Hugging Face tokenizers
HF_TEXTS = HARD_CASES[:-6] + ["a photo of the cat", "The DOGS running on the mat!", "a big, red car.  x " * 6,
                              "unknown wörds &amp; stuff", "Cat_photo: the_dog", "[SEP] [CLS] [PAD]"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertTokenizerFast
    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "cat", "dog", "##s", "!", ",",
             ".", "is", "on", "mat", "big", "red", "car", "##ing", "run", "'", "x", "&", "_", ":", "<", ">", "b",
             "##b", "##x", "1", "2", "3", "日", "本", "語", "é", "e", "##e", "s", "t", "it", "i", "m"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    # transformers 5 names the argument `vocab` (a path or a dict); 4.x called it `vocab_file`.
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    vocab_arg = "vocab_file" if "vocab_file" in params else "vocab"
    tok = BertTokenizerFast(**{vocab_arg: str(folder / "vocab.txt")}, do_lower_case=True, bos_token="[CLS]",
                            eos_token="[SEP]")
    assert len(tok) == len(words)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kwargs", [
    dict(strip_sep_token=True, context_length=32),
    dict(),
    dict(clean="lower", context_length=16),
    dict(clean="canonicalize", strip_sep_token=True),
    dict(context_length=8, tokenizer_mode="clips"),
])
def test_hf_tokenizer_matches_open_clip(bert_dir, kwargs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = HFTokenizer(bert_dir, **kwargs)
    ref = open_clip_tokenizer.HFTokenizer(bert_dir, **kwargs)
    got = ours(HF_TEXTS)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref(HF_TEXTS).numpy())
    for context_length in (5, 3):
        np.testing.assert_array_equal(ours(HF_TEXTS, context_length), ref(HF_TEXTS, context_length).numpy())
    np.testing.assert_array_equal(ours("a photo of the cat"), ref("a photo of the cat").numpy())


def test_hf_tokenizer_api(bert_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = HFTokenizer(bert_dir, context_length=12, strip_sep_token=True)
    assert tok.context_length == 12 and tok.pad_token_id == 0 and tok.vocab_size == 47
    assert tok(["a photo of the cat"]).tolist() == [[2, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0]]
    assert tok.decode(tok("A photo of the CAT")[0]) == "a photo of the cat"
    assert tok([]).shape == (0, 12)
    tok.save_pretrained(str(tmp_path / "copy"))
    np.testing.assert_array_equal(HFTokenizer(str(tmp_path / "copy"), context_length=12, strip_sep_token=True)
                                  (["a dog"]), tok(["a dog"]))
    with pytest.warns(UserWarning, match="no source-language setting"):
        HFTokenizer(bert_dir, language="fra_Latn")


def test_hf_tokenizer_errors(bert_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="clean must be one of"):
        HFTokenizer(bert_dir, clean="bogus")
    with pytest.raises(ValueError, match="tokenizer_mode"):
        HFTokenizer(bert_dir, tokenizer_mode="bogus")
    tok = HFTokenizer(bert_dir)
    with pytest.raises(TypeError, match=r"texts\[0\] must be str, got NoneType"):
        tok([None])
    with pytest.raises(ValueError, match="context_length"):
        tok("a", context_length=-1)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="pip install transformers"):
        HFTokenizer(bert_dir)
