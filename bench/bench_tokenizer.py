"""CLIP tokenizer throughput: anyclip's CLIPTokenizer against open_clip's SimpleTokenizer, same machine, one run.

Two corpora: (a) 10,000 distinct short zero-shot prompts "a photo of a {classname}." and (b) 2,000 long
captions of about 100 words (cut to 77 tokens). Both tokenizers are checked to give the same ids first.

* warm: median over ``--repeats`` calls after one warm-up call (both tokenizers memoise per word/chunk);
* cold: the first call of a freshly built tokenizer (memos empty).

    python bench/bench_tokenizer.py
    python bench/bench_tokenizer.py --repeats 9
"""

import argparse
import os
import random
import time

from timing import timed  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "jax")  # importing anyclip imports keras

ADJECTIVES = ("small large old young red blue green yellow black white wooden metal plastic striped spotted "
              "wild domestic tiny giant fluffy shiny rusty broken vintage modern frozen wet dry dark bright "
              "sleeping running flying swimming jumping sitting standing hungry happy angry curious baby adult "
              "male female striped furry bald colorful pale golden silver purple orange pink brown grey spiky "
              "smooth rough long short tall round square hollow heavy light ancient futuristic rural urban "
              "tropical arctic desert alpine marine aquatic urban cartoon realistic painted carved knitted "
              "folded glowing smoky dusty muddy snowy sunny rainy foggy windy stormy cozy noisy quiet elegant "
              "clumsy brave").split()
NOUNS = ("cat dog bird fish horse cow sheep goat pig rabbit mouse rat hamster squirrel fox wolf bear lion tiger "
         "leopard cheetah elephant giraffe zebra hippo rhino monkey gorilla kangaroo koala panda penguin owl eagle "
         "parrot duck goose swan frog toad snake lizard turtle crocodile shark whale dolphin octopus crab lobster "
         "snail spider bee ant butterfly beetle car truck bus bicycle motorcycle airplane helicopter boat ship "
         "train tractor rocket chair table sofa bed lamp clock phone laptop keyboard camera guitar piano violin "
         "drum bottle cup bowl plate fork knife spoon apple banana orange lemon grape strawberry tomato potato "
         "carrot mushroom tree flower house castle bridge tower mountain").split()
WORDS = ("the a an of and in on with at by from to is are was were this that there here it its "
         "man woman child boy girl people person dog cat street city building tree sky cloud water river mountain "
         "beach sand snow grass field road car bus train bicycle standing sitting walking running holding "
         "looking playing wearing eating red blue green yellow white black small large old young beautiful "
         "colorful wooden metal glass stone view near next behind front top bottom side during sunset morning "
         "night photograph image picture scene background foreground shirt hat table window door wall floor "
         "It's they're we've I'm you'll he'd, can't don't 2019 3 42 1,000 St. Dr. Mr.").split()


def prompts(n):
    classnames = [f"{adjective} {noun}" for adjective in ADJECTIVES for noun in NOUNS]
    assert len(classnames) >= n, len(classnames)
    return [f"a photo of a {name}." for name in classnames[:n]]


def captions(n, words=100, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        sentence = []
        for i in range(words):
            word = rng.choice(WORDS)
            if i == 0 or sentence[-1].endswith("."):
                word = word.capitalize()
            if rng.random() < 0.08:
                word += rng.choice([".", ",", "!", ";", ":"])
            sentence.append(word)
        out.append(" ".join(sentence))
    return out




def cold(make, texts):
    tok = make()
    start = time.perf_counter()
    tok(texts)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--captions", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    from open_clip.tokenizer import SimpleTokenizer

    from anyclip.tokenizers import CLIPTokenizer

    corpora = {f"{args.prompts:,} short prompts": prompts(args.prompts),
               f"{args.captions:,} ~100-word captions": captions(args.captions)}
    ref, ours = SimpleTokenizer(), CLIPTokenizer()
    print(f"{'corpus':32s} {'mode':5s} {'open_clip txt/s':>16s} {'anyclip txt/s':>14s} {'ratio':>7s}")
    for name, texts in corpora.items():
        np.testing.assert_array_equal(ours(texts), ref(texts).numpy())  # same ids before timing anything
        n = len(texts)
        rows = {
            "cold": (n / cold(SimpleTokenizer, texts), n / cold(CLIPTokenizer, texts)),
            "warm": (n / timed(lambda: ref(texts), args.repeats), n / timed(lambda: ours(texts), args.repeats)),
        }
        for mode, (theirs, mine) in rows.items():
            print(f"{name:32s} {mode:5s} {theirs:16,.0f} {mine:14,.0f} {mine / theirs:6.1f}x")


if __name__ == "__main__":
    main()
