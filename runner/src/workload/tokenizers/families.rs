//! The kit's default tokenizers: a model's family from its name, and the Hugging Face
//! repository whose tokenizer stands for that family (kit-reference 2.1, the kit's
//! `get_tokenizer_model_name` at HEAD). The repositories are the kit's ungated mirrors, so no
//! token is needed.
//!
//! Where coebench deliberately differs from the kit: the family test removes `-` but not every
//! `v` (the kit's removal of `v` made `EEVE` unreachable), and a name of no known family gets
//! no repository (the kit gave it gpt-oss's tokenizer): the caller falls back to the embedded
//! tokenizer with a warning instead of guessing.

/// The families, in the order the kit tests them, with the fragments that identify each in a
/// lower-cased model name without `-`.
const FAMILIES: [(Family, &[&str]); 12] = [
    (Family::Mistral, &["mistral"]),
    (Family::Llama2, &["llama2"]),
    (Family::Llama3, &["llama3"]),
    (Family::Llama4, &["llama4"]),
    (Family::DeepSeek, &["deepseek"]),
    (Family::Qwen, &["qwen", "qwq"]),
    (Family::Solar, &["solar"]),
    (Family::Eeve, &["eeve"]),
    (Family::GptOss, &["gptoss"]),
    (Family::Allam, &["allam"]),
    (Family::MiniMax, &["minimax"]),
    (Family::Gemma, &["gemma"]),
];

/// A model family the kit knows a tokenizer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Mistral,
    Llama2,
    Llama3,
    Llama4,
    DeepSeek,
    Qwen,
    Solar,
    Eeve,
    GptOss,
    Allam,
    MiniMax,
    Gemma,
}

/// The family of `model`, if its name has a known family's fragment.
fn family_of(model: &str) -> Option<Family> {
    let key = model.to_lowercase().replace('-', "");
    FAMILIES
        .iter()
        .find(|(_, fragments)| fragments.iter().any(|f| key.contains(f)))
        .map(|(family, _)| *family)
}

/// The Hugging Face repository of the kit's tokenizer for `model`, or `None` when the name is
/// of no family the kit knows.
pub fn kit_tokenizer_repo(model: &str) -> Option<&'static str> {
    let lower = model.to_lowercase();
    let has = |s: &str| lower.contains(s);
    let repo = match family_of(model)? {
        Family::Mistral => "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
        Family::Llama2 => "NousResearch/Llama-2-7b-chat-hf",
        Family::Llama3 if has("3.1") || has("3p1") => {
            if has("swallow") {
                "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3"
            } else {
                "unsloth/Llama-3.1-8B-Instruct"
            }
        }
        Family::Llama3 if has("3.2") || has("3p2") => "unsloth/Llama-3.2-1B-Instruct",
        Family::Llama3 if has("3.3") || has("3p3") => "unsloth/Llama-3.3-70B-Instruct",
        Family::Llama3 => "unsloth/llama-3-8b-Instruct",
        Family::Llama4 if has("maverick") => "unsloth/Llama-4-Maverick-17B-128E-Instruct",
        Family::Llama4 => "unsloth/Llama-4-Scout-17B-16E-Instruct",
        Family::DeepSeek if has("coder") => "deepseek-ai/deepseek-coder-1.3b-base",
        Family::DeepSeek => "deepseek-ai/DeepSeek-R1",
        Family::Qwen if has("qwq") => "unsloth/QwQ-32B",
        Family::Qwen if has("coder") => "unsloth/Qwen2.5-Coder-32B-Instruct",
        Family::Qwen => "unsloth/Qwen2.5-72B-Instruct",
        Family::Solar => "upstage/SOLAR-10.7B-Instruct-v1.0",
        Family::Eeve => "yanolja/EEVE-Korean-10.8B-v1.0",
        Family::GptOss => "openai/gpt-oss-120b",
        Family::Allam => "humain-ai/ALLaM-7B-Instruct-preview",
        Family::MiniMax => "MiniMaxAI/MiniMax-M2.5",
        Family::Gemma => "unsloth/gemma-3-1b-it",
    };
    Some(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sambanova_model_names_map_to_the_kits_repositories() {
        for (model, repo) in [
            (
                "Meta-Llama-3.3-70B-Instruct",
                "unsloth/Llama-3.3-70B-Instruct",
            ),
            (
                "Meta-Llama-3.1-8B-Instruct",
                "unsloth/Llama-3.1-8B-Instruct",
            ),
            (
                "Llama-3.1-Swallow-8B-Instruct-v0.3",
                "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3",
            ),
            (
                "Llama-3.2-11B-Vision-Instruct",
                "unsloth/Llama-3.2-1B-Instruct",
            ),
            ("Meta-Llama-3-8B-Instruct", "unsloth/llama-3-8b-Instruct"),
            (
                "Llama-4-Maverick-17B-128E-Instruct",
                "unsloth/Llama-4-Maverick-17B-128E-Instruct",
            ),
            (
                "Llama-4-Scout-17B-16E-Instruct",
                "unsloth/Llama-4-Scout-17B-16E-Instruct",
            ),
            ("DeepSeek-V3-0324", "deepseek-ai/DeepSeek-R1"),
            ("DeepSeek-R1-Distill-Llama-70B", "deepseek-ai/DeepSeek-R1"),
            ("QwQ-32B", "unsloth/QwQ-32B"),
            (
                "Qwen2.5-Coder-32B-Instruct",
                "unsloth/Qwen2.5-Coder-32B-Instruct",
            ),
            ("Qwen3-32B", "unsloth/Qwen2.5-72B-Instruct"),
            ("gpt-oss-120b", "openai/gpt-oss-120b"),
            (
                "ALLaM-7B-Instruct-preview",
                "humain-ai/ALLaM-7B-Instruct-preview",
            ),
            ("MiniMax-M2.5", "MiniMaxAI/MiniMax-M2.5"),
            ("gemma-3-12b-it", "unsloth/gemma-3-1b-it"),
            (
                "Mistral-7B-Instruct-v0.2",
                "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
            ),
            (
                "EEVE-Korean-Instruct-10.8B",
                "yanolja/EEVE-Korean-10.8B-v1.0",
            ),
            ("Llama-2-7b-chat", "NousResearch/Llama-2-7b-chat-hf"),
        ] {
            assert_eq!(kit_tokenizer_repo(model), Some(repo), "{model}");
        }
    }

    #[test]
    fn names_of_no_known_family_get_no_repository() {
        for model in [
            "expert-a",
            "SmolLM2-135M-Instruct",
            "tiny",
            "Bundle/mystery",
        ] {
            assert_eq!(kit_tokenizer_repo(model), None, "{model}");
        }
    }
}
