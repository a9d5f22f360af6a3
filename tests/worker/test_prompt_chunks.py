"""A1111's token chunks (sd_hijack_clip.tokenize_line's rules) on the tiny model's real CLIP BPE."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from sdxlpool.worker.conditioning import CHUNK_LENGTH, prompt_chunks, prompt_text, special_ids
from sdxlpool.worker.conditioning.chunks import EmbeddingMatch


@pytest.fixture(scope="module")
def tokenizers(tiny_model) -> tuple[CLIPTokenizer, CLIPTokenizer]:
    return (CLIPTokenizer.from_pretrained(tiny_model.base / "tokenizer"),
            CLIPTokenizer.from_pretrained(tiny_model.base / "tokenizer_2"))


def ids_of(tokenizer: CLIPTokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_empty_prompt_is_one_padded_chunk_with_each_encoders_padding(tokenizers) -> None:
    for tokenizer, pad in zip(tokenizers, (tokenizers[0].eos_token_id, 0), strict=True):
        (chunk,) = prompt_chunks("", tokenizer)
        ids = special_ids(tokenizer)
        assert chunk.tokens == [ids.bos, ids.eos] + [pad] * 75
        assert chunk.multipliers == [1.0] * 77


def test_weights_follow_their_tokens(tokenizers) -> None:
    tokenizer = tokenizers[0]
    (chunk,) = prompt_chunks("a (red:1.5) [cat]", tokenizer)
    a, red, cat = ids_of(tokenizer, "a"), ids_of(tokenizer, "red"), ids_of(tokenizer, "cat")
    n = len(a) + len(red) + len(cat)
    assert chunk.tokens[1 : n + 1] == a + red + cat
    assert chunk.multipliers[: n + 2] == [1.0] * (len(a) + 1) + [1.5] * len(red) + [1 / 1.1] * len(cat) + [1.0]
    assert chunk.tokens[n + 1] == tokenizer.eos_token_id


def test_long_prompt_continues_in_chunks_of_75(tokenizers) -> None:
    tokenizer = tokenizers[0]
    a = ids_of(tokenizer, "a")
    assert len(a) == 1
    chunks = prompt_chunks("a " * 160, tokenizer)
    assert [c.tokens.count(a[0]) for c in chunks] == [75, 75, 10]
    assert all(len(c.tokens) == len(c.multipliers) == 77 for c in chunks)


def test_comma_backtrack_moves_the_phrase_after_the_last_comma(tokenizers) -> None:
    tokenizer = tokenizers[0]
    a, comma = ids_of(tokenizer, "a")[0], special_ids(tokenizer).comma
    # 60 tokens, a comma (61st), 20 weighted tokens: the chunk fills at 75, the comma is 14 back.
    chunks = prompt_chunks("a " * 60 + ", " + "(a:1.2) " * 20, tokenizer)
    first, second = chunks
    assert first.tokens[1:63] == [a] * 60 + [comma] + [tokenizer.eos_token_id]
    assert second.tokens[1:21] == [a] * 20 and second.multipliers[1:21] == [1.2] * 20
    # A comma further back than 20 tokens is not used: the chunk is cut at 75.
    first, second = prompt_chunks("a " * 40 + ", " + "a " * 60, tokenizer)
    assert first.tokens[76] == tokenizer.eos_token_id and first.tokens[1:76].count(a) == 74
    assert second.tokens[1:27] == [a] * 26


def test_break_starts_a_new_chunk(tokenizers) -> None:
    tokenizer = tokenizers[0]
    first, second = prompt_chunks("a BREAK cat", tokenizer)
    assert first.tokens[1:3] == ids_of(tokenizer, "a") + [tokenizer.eos_token_id]
    assert second.tokens[1 : 1 + len(ids_of(tokenizer, "cat"))] == ids_of(tokenizer, "cat")
    assert len(prompt_chunks("a cat", tokenizer)) == 1


def test_embedding_is_never_split_between_chunks(tokenizers) -> None:
    tokenizer = tokenizers[0]
    name = ids_of(tokenizer, "tiny-style")

    def match(tokens, position):
        return EmbeddingMatch("tiny-style", 4, len(name)) if list(tokens[position : position + len(name)]) == name else None

    (chunk,) = prompt_chunks("a a tiny-style a", tokenizer, match)
    assert chunk.fixes == [(3, "tiny-style")]  # after the start token and two "a"
    assert chunk.tokens[3:7] == [0] * 4
    first, second = prompt_chunks("a " * 73 + "(tiny-style:1.3) a", tokenizer, match)
    assert first.fixes == [] and first.tokens[74] == tokenizer.eos_token_id  # 73 tokens, then the end
    assert second.fixes == [(1, "tiny-style")] and second.multipliers[1:5] == [1.3] * 4


def test_prompt_text_takes_out_networks_and_names_unsupported_constructs() -> None:
    text = prompt_text("a cat <lora:x:0.5> AND a dog <hypernet:h:1>")
    assert text.text == "a cat, a dog"
    assert text.ignored == ("prompt: <hypernet:h:1> (hypernetworks are not supported)",
                            "prompt: AND (composable diffusion is not supported)")
    assert prompt_text("(a cat:1.2), [b]").ignored == ()
    assert CHUNK_LENGTH == 75
