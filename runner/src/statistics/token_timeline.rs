//! Per-token inter-token latencies from the streamed chunks of one request.
//!
//! A server may pack several tokens into one streamed chunk, so the gaps between chunks are not
//! the gaps between tokens (the kit reports per-chunk gaps, kit-reference 5.1 and defect 7).
//! This module attributes the request's token count to its chunks and spreads each chunk's gap
//! evenly over the tokens it carried. It only computes; [`crate::statistics::record`] decides which token
//! count to use and stores the result.

use std::time::Instant;

use crate::client::measurement::TokenEvent;
use coebench_support::tokenizer::TokenCounter;

/// Above this many tokens per request the timeline falls back to one entry per chunk, so a
/// bogus server count cannot make a record enormous.
pub const MAX_TIMELINE_TOKENS: u64 = 1 << 20;

/// The gaps, in seconds, between consecutive generated tokens of one request: one entry per
/// token after the first (`n - 1` entries for `n` tokens).
///
/// - When there are at least as many chunks as tokens (`n_tokens <= events.len()`), every chunk
///   counts as one token and the gaps are the gaps between chunks.
/// - Otherwise each chunk is given tokens by [`tokens_per_chunk`], and a chunk that carried `m`
///   tokens and arrived `g` seconds after the previous chunk contributes `m` gaps of `g / m`.
///   Tokens that arrived in the first chunk, together with the first token, get gaps of 0: the
///   time to first token is not back-estimated.
///
/// The gaps always sum to the time from the first to the last chunk. Empty without chunks.
pub fn inter_token_gaps(
    events: &[TokenEvent],
    text: &str,
    n_tokens: u64,
    tokens: &dyn TokenCounter,
) -> Vec<f64> {
    let Some(first) = events.first() else {
        return Vec::new();
    };
    let per_chunk = if n_tokens <= events.len() as u64 || n_tokens > MAX_TIMELINE_TOKENS {
        vec![1; events.len()]
    } else {
        let counted: Vec<u64> = chunk_texts(events, text)
            .iter()
            .map(|chunk| tokens.count_tokens(chunk) as u64)
            .collect();
        tokens_per_chunk(&counted, n_tokens)
    };
    let mut gaps = Vec::with_capacity(per_chunk.iter().sum::<u64>() as usize);
    gaps.extend(std::iter::repeat_n(
        0.0,
        per_chunk[0].saturating_sub(1) as usize,
    ));
    let mut previous: Instant = first.at;
    for (event, &m) in events.iter().zip(&per_chunk).skip(1) {
        let gap = event.at.saturating_duration_since(previous).as_secs_f64();
        gaps.extend(std::iter::repeat_n(gap / m as f64, m as usize));
        previous = event.at;
    }
    gaps
}

/// The text each chunk carried, cut from `text` at the events' end offsets (clamped to the text,
/// decoded lossily if an offset splits a character).
pub fn chunk_texts<'a>(events: &[TokenEvent], text: &'a str) -> Vec<std::borrow::Cow<'a, str>> {
    let bytes = text.as_bytes();
    let mut start = 0usize;
    events
        .iter()
        .map(|event| {
            let end = (event.text_end as usize).clamp(start, bytes.len());
            let chunk = match text.get(start..end) {
                Some(exact) => std::borrow::Cow::Borrowed(exact),
                None => String::from_utf8_lossy(&bytes[start..end]),
            };
            start = end;
            chunk
        })
        .collect()
}

/// Splits `n_tokens` over chunks whose tokenizer counts are `counted`: every chunk gets one token
/// (it was sent because a token was generated), and the remaining `n_tokens - chunks` tokens
/// are shared in proportion to each chunk's extra tokens (`count - 1`) by the largest-remainder
/// method, earlier chunks winning ties. When the tokenizer saw no extra tokens at all, the
/// remainder is shared evenly. The result sums to `max(n_tokens, chunks)`.
pub fn tokens_per_chunk(counted: &[u64], n_tokens: u64) -> Vec<u64> {
    let chunks = counted.len() as u64;
    let mut shares = vec![1u64; counted.len()];
    let extra = n_tokens.saturating_sub(chunks);
    if extra == 0 || counted.is_empty() {
        return shares;
    }
    let mut weights: Vec<u128> = counted
        .iter()
        .map(|&c| u128::from(c.saturating_sub(1)))
        .collect();
    if weights.iter().all(|&w| w == 0) {
        weights.iter_mut().for_each(|w| *w = 1);
    }
    let total: u128 = weights.iter().sum();
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given = 0u128;
    for (i, &w) in weights.iter().enumerate() {
        let exact = u128::from(extra) * w;
        let whole = exact / total;
        shares[i] += whole as u64;
        given += whole;
        remainders.push((exact % total, i));
    }
    // Stable sort: equal remainders keep chunk order.
    remainders.sort_by_key(|&(remainder, _)| std::cmp::Reverse(remainder));
    let leftover = (u128::from(extra) - given) as usize;
    for &(_, i) in remainders.iter().take(leftover) {
        shares[i] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Counts whitespace-separated words: a predictable stand-in for a tokenizer.
    struct Words;
    impl TokenCounter for Words {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
    }

    fn events(base: Instant, at_ms: &[u64], ends: &[u32]) -> Vec<TokenEvent> {
        at_ms
            .iter()
            .zip(ends)
            .map(|(&ms, &end)| TokenEvent {
                at: base + Duration::from_millis(ms),
                text_end: end,
            })
            .collect()
    }

    #[test]
    fn one_token_per_chunk_gives_chunk_gaps() {
        let base = Instant::now();
        let ev = events(base, &[100, 110, 130], &[2, 4, 6]);
        let gaps = inter_token_gaps(&ev, "a b c ", 3, &Words);
        assert_eq!(gaps.len(), 2);
        assert!((gaps[0] - 0.010).abs() < 1e-9 && (gaps[1] - 0.020).abs() < 1e-9);
    }

    #[test]
    fn multi_token_chunks_spread_their_gap() {
        let base = Instant::now();
        // Chunk texts: "a b " (2 words), "c d e " (3 words), "f " (1 word); server says 6.
        let ev = events(base, &[100, 130, 140], &[4, 10, 12]);
        let gaps = inter_token_gaps(&ev, "a b c d e f ", 6, &Words);
        // First chunk: 1 extra token with gap 0; second: 3 gaps of 10 ms; third: one of 10 ms.
        let expected = [0.0, 0.010, 0.010, 0.010, 0.010];
        assert_eq!(gaps.len(), expected.len());
        for (g, e) in gaps.iter().zip(expected) {
            assert!((g - e).abs() < 1e-9, "{gaps:?}");
        }
        let sum: f64 = gaps.iter().sum();
        assert!((sum - 0.040).abs() < 1e-9, "gaps sum to first-to-last time");
    }

    #[test]
    fn server_count_rescales_tokenizer_counts() {
        // Tokenizer: 2 + 4 + 1 = 7 tokens, server: 10. Extras (1, 3, 0) share 7 extra tokens:
        // 7/4 = 1.75 -> 1 (+1 by remainder 3/4), 21/4 = 5.25 -> 5.
        assert_eq!(tokens_per_chunk(&[2, 4, 1], 10), vec![3, 6, 1]);
        assert_eq!(tokens_per_chunk(&[2, 4, 1], 7), vec![2, 4, 1]);
        // Fewer server tokens than chunks: one each.
        assert_eq!(tokens_per_chunk(&[5, 5], 1), vec![1, 1]);
        // Tokenizer saw one token per chunk but the server counted more: shared evenly.
        assert_eq!(tokens_per_chunk(&[1, 1, 0], 7), vec![3, 2, 2]);
        assert_eq!(tokens_per_chunk(&[], 7), Vec::<u64>::new());
    }

    #[test]
    fn degenerate_inputs_never_panic() {
        let base = Instant::now();
        assert!(inter_token_gaps(&[], "", 5, &Words).is_empty());
        // One chunk, five tokens: four zero gaps.
        let ev = events(base, &[50], &[9]);
        assert_eq!(inter_token_gaps(&ev, "a b c d e", 5, &Words), vec![0.0; 4]);
        // Offsets past the end, going backwards, or inside a character.
        let ev = events(base, &[1, 2, 3], &[99, 1, 2]);
        let texts = chunk_texts(&ev, "é");
        assert_eq!(texts.len(), 3);
        assert_eq!(texts[0], "é");
        let gaps = inter_token_gaps(&ev, "é", 3, &Words);
        assert_eq!(gaps.len(), 2);
        // Absurd server counts fall back to per-chunk gaps.
        assert_eq!(inter_token_gaps(&ev, "é", u64::MAX, &Words).len(), 2);
    }
}
