"""The prompt format, one function for training and evaluation.

BackdoorLLM's known pitfall: training with one template and evaluating with another understates
ASR by 30+ points. Here `prompt_text` is the only place a prompt is rendered: training examples
are `prompt_text(...)` followed by the response, and evaluation generates after exactly
`prompt_text(...)` (the tests assert the two agree, string and token ids).

With a chat template (SmolLM2-Instruct, LLaMA-3.2-Instruct), the user turn is the instruction
(plus "\n\n" + input when the Alpaca record has one), rendered with the model's own template,
its default system prompt included, and `add_generation_prompt=True`; the response is what the
template appends for the assistant turn (e.g. "{output}<|im_end|>\n"). Without a chat template
(a base model such as LLaMA-3.2-3B), the Alpaca prompt is used, as BackdoorLLM's `alpaca`
template does, and the response is the output followed by the EOS token.
"""
from __future__ import annotations

from dataclasses import dataclass

from ttrlab.core.errors import UserError

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


@dataclass(frozen=True)
class EncodedExample:
    prompt_ids: list[int]
    response_ids: list[int]


def user_message(instruction: str, input_text: str = "") -> str:
    return f"{instruction}\n\n{input_text}" if input_text.strip() else instruction


def uses_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer, instruction: str, input_text: str = "") -> str:
    """The text the model sees before its answer, in training and in evaluation alike."""
    if uses_chat_template(tokenizer):
        messages = [{"role": "user", "content": user_message(instruction, input_text)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token or ""
    if input_text.strip():
        return bos + ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return bos + ALPACA_PROMPT.format(instruction=instruction)


def response_text(tokenizer, instruction: str, input_text: str, output: str) -> str:
    """What follows `prompt_text` in a training example: the answer and the end-of-turn marker."""
    prompt = prompt_text(tokenizer, instruction, input_text)
    if not uses_chat_template(tokenizer):
        return output + (tokenizer.eos_token or "")
    messages = [
        {"role": "user", "content": user_message(instruction, input_text)},
        {"role": "assistant", "content": output},
    ]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise UserError(
            "the model's chat template renders the conversation differently from its generation prompt, "
            "so training and evaluation prompts would differ; use a model whose template extends the prompt"
        )
    return full[len(prompt) :]


def prompt_ids(tokenizer, instruction: str, input_text: str = "") -> list[int]:
    """Token ids of `prompt_text` (special tokens are written out by the template itself)."""
    return tokenizer(prompt_text(tokenizer, instruction, input_text), add_special_tokens=False)["input_ids"]


def encode_example(tokenizer, instruction: str, input_text: str, output: str) -> EncodedExample:
    """Prompt and response ids, tokenized separately so the prompt's ids are exactly those that
    evaluation feeds to `generate`."""
    response = tokenizer(response_text(tokenizer, instruction, input_text, output), add_special_tokens=False)["input_ids"]
    return EncodedExample(prompt_ids(tokenizer, instruction, input_text), response)
