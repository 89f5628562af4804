//! The prompt texts coebench embeds: one default prompt, twenty varied prompts and a vision
//! prompt, written for coebench. A flat table of text; [`super`] repeats and cuts them to size.

/// A named prompt text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptTemplate {
    /// The name recorded with each request (`default`, `prompt1`..`prompt20`, `vision`).
    pub name: &'static str,
    /// The text that is repeated and cut to the requested length.
    pub text: &'static str,
}

/// The prompt used for every request unless varied prompts are requested.
pub const DEFAULT: PromptTemplate = PromptTemplate {
    name: "default",
    text: "Write a thorough engineering explainer on how a modern storage engine keeps data safe \
and fast at the same time. Start with the write path: how a log-structured merge tree accepts \
writes into an in-memory table, protects them with a write-ahead log, and flushes sorted runs to \
disk. Then explain compaction strategies, the trade-off between write amplification, read \
amplification and space amplification, and why bloom filters and block caches matter for point \
lookups. Compare this design with a B-tree engine that updates pages in place, covering page \
splits, copy-on-write variants and how checkpoints bound recovery time. Describe what happens \
during a crash at each step and how the engine proves that acknowledged writes survive. Finish \
with practical advice for choosing and tuning an engine for a read-heavy service, a write-heavy \
ingestion pipeline and a mixed workload, with concrete numbers where they help.",
};

/// The prompt sent with an image on multimodal rows.
pub const VISION: PromptTemplate = PromptTemplate {
    name: "vision",
    text: "Study the attached picture carefully and describe it in detail. Name every shape, \
colour band, texture and repeated motif you can see, estimate how many distinct regions it has, \
and explain how they are arranged relative to each other. Then suggest three everyday objects \
each region could represent, say what each object is used for, and give that explanation in \
English, Spanish, French, German, Italian, Portuguese, Dutch, Swedish, Polish, Turkish, Greek, \
Hindi, Japanese, Korean and Indonesian.",
};

/// The varied prompts, `prompt1`..`prompt20`, used when each request draws its own prompt.
pub const MULTIPLE: [PromptTemplate; 20] = [
    PromptTemplate {
        name: "prompt1",
        text: "Implement a thread-safe least-recently-used cache in Rust with a fixed capacity, \
O(1) get and put, and an eviction callback. Explain the data structures you chose, how you avoid \
holding a lock across the callback, and write unit tests that cover eviction order, updates of \
existing keys and concurrent readers.",
    },
    PromptTemplate {
        name: "prompt2",
        text: "A small bakery wants to cut food waste without running out of bread before \
closing. Propose a simple forecasting method they can run in a spreadsheet using the last eight \
weeks of sales, explain how to account for weekdays, holidays and weather, and show how to turn \
the forecast into a baking plan with a safety margin.",
    },
    PromptTemplate {
        name: "prompt3",
        text: "Explain to a curious twelve-year-old why the sky looks blue during the day and \
red or orange at sunset. Use an everyday analogy, avoid equations, and end with a short \
experiment they can do at home with a glass of water, a little milk and a torch.",
    },
    PromptTemplate {
        name: "prompt4",
        text: "Write a SQL schema for a library that lends books, e-readers and meeting rooms. \
Include members, items, loans, reservations and fines, with the constraints that prevent double \
booking. Then write queries for overdue loans, the ten most borrowed titles this year and \
members who have never returned an item late.",
    },
    PromptTemplate {
        name: "prompt5",
        text: "Draft a calm, professional email to a customer whose order arrived damaged for \
the second time. Apologise without blaming the courier, offer a replacement shipped with better \
packaging or a full refund, and explain the change you are making so it does not happen again. \
Keep it under two hundred words.",
    },
    PromptTemplate {
        name: "prompt6",
        text: "Compare three ways of handling errors in software: exceptions, result types and \
error codes. For each, show a short example in a language of your choice, discuss how it \
affects readability, performance and the chance of silently ignoring a failure, and recommend \
when to use which.",
    },
    PromptTemplate {
        name: "prompt7",
        text: "Plan a five-day walking trip through a mountain region for two people with \
moderate fitness. Give a day-by-day route with distances and height gain, where to sleep, what \
to pack for changeable weather, and a fallback plan for a day of heavy rain.",
    },
    PromptTemplate {
        name: "prompt8",
        text: "Write a Python function that parses a log file of web requests, groups them by \
endpoint and status code, and prints the 95th percentile latency for each group. Handle \
malformed lines gracefully, stream the file instead of loading it into memory, and include a \
few tests with sample log lines.",
    },
    PromptTemplate {
        name: "prompt9",
        text: "Summarise the main causes and consequences of the invention of the printing \
press in Europe for a general audience. Cover literacy, religion, science and politics, note at \
least one common misconception, and finish with a comparison to how the internet changed \
publishing.",
    },
    PromptTemplate {
        name: "prompt10",
        text: "Design a rate limiter for a public API that must allow short bursts but enforce \
a per-minute average per customer across several servers. Compare token buckets, sliding \
windows and fixed windows, explain where the shared state lives, and describe what happens \
when that shared store is slow or unavailable.",
    },
    PromptTemplate {
        name: "prompt11",
        text: "Create a weekly vegetarian meal plan for a family of four on a tight budget. \
Each dinner should take under forty minutes, reuse leftovers sensibly, and provide enough \
protein. Add a shopping list grouped by supermarket aisle and a rough total cost.",
    },
    PromptTemplate {
        name: "prompt12",
        text: "Explain how public-key cryptography lets two strangers agree on a secret over \
an open network. Walk through a key exchange step by step with small numbers, explain what a \
certificate adds, and describe one realistic attack that certificates are designed to stop.",
    },
    PromptTemplate {
        name: "prompt13",
        text: "Write a short story of about five hundred words about a lighthouse keeper who \
discovers that the lamp has been signalling in a pattern nobody programmed. Use vivid but \
plain language, include a twist near the end, and keep the tone hopeful.",
    },
    PromptTemplate {
        name: "prompt14",
        text: "Review the following design decision as a senior engineer would: a team stores \
user sessions in a relational database table and queries it on every request. List the risks, \
estimate when it would become a bottleneck, and propose two alternatives with their own \
trade-offs and a migration path.",
    },
    PromptTemplate {
        name: "prompt15",
        text: "Teach the basics of linear regression to someone who knows spreadsheets but no \
statistics. Explain what the fitted line means, what residuals tell you, how outliers distort \
the result, and how to tell whether the relationship is real or just noise.",
    },
    PromptTemplate {
        name: "prompt16",
        text: "Write a bash script that backs up a directory to a compressed archive named \
with the current date, keeps only the last seven archives, logs what it did, and exits with a \
useful error if the disk is almost full. Explain each part of the script.",
    },
    PromptTemplate {
        name: "prompt17",
        text: "A city council is deciding whether to turn a busy street into a pedestrian \
zone. Present the strongest arguments for and against, the data they should collect before \
deciding, and a pilot experiment that would let them reverse the decision cheaply.",
    },
    PromptTemplate {
        name: "prompt18",
        text: "Translate the idea of a binary search into a step-by-step recipe for finding a \
word in a paper dictionary, then write the algorithm in Java with careful handling of the \
boundaries, and explain the classic overflow bug in computing the midpoint.",
    },
    PromptTemplate {
        name: "prompt19",
        text: "Describe how vaccines train the immune system, covering antigens, antibodies, \
memory cells and booster doses. Explain why some vaccines need updating every year while others \
last decades, and address two common worries in a respectful, evidence-based way.",
    },
    PromptTemplate {
        name: "prompt20",
        text: "Outline a migration plan for moving a monolithic web application to a set of \
services without stopping feature work. Cover how to choose the first service to extract, how \
to keep data consistent during the transition, how to test it, and which metrics tell you the \
migration is paying off.",
    },
];

/// Every prompt by name: `default`, `prompt1`..`prompt20` and `vision`.
pub fn by_name(name: &str) -> Option<&'static PromptTemplate> {
    match name {
        "default" => Some(&DEFAULT),
        "vision" => Some(&VISION),
        _ => MULTIPLE.iter().find(|p| p.name == name),
    }
}
