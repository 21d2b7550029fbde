//! Synthetic prompts: vLLM's `RandomDataset` and `PrefixRepetitionRandomDataset`.
//!
//! Token ids are generated, decoded to text, and the text re-encoded; since decode/encode
//! is not a bijection (`[calls][here]` may re-encode as `[call][sh][ere]`), the ids are
//! truncated or padded and the round trip repeated (at most 10 times) until the text
//! encodes to the target length. The prompt length reported is that of the final encoding.

use anyhow::{Result, bail};
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::SampleRequest;
use crate::args::ServeArgs;
use ferrum_tokenizer::Tokenizer;

/// The text for `token_sequence`, adjusted until it encodes (without special tokens) to
/// `target_len` ids. Returns the text, its ids, and how many ids it is off by when ten
/// rounds were not enough (positive: too many).
pub fn decode_to_target_len<R: Rng>(
    tok: &Tokenizer,
    mut token_sequence: Vec<u32>,
    target_len: usize,
    rng: &mut R,
) -> Result<(String, Vec<u32>, i64)> {
    let vocab = tok.vocab_size() as u32;
    let mut remaining_tries = 10;
    loop {
        let prompt = tok.decode(&token_sequence, false)?;
        token_sequence = tok.encode(&prompt, false)?;
        let len = token_sequence.len();
        if remaining_tries == 0 {
            return Ok((prompt, token_sequence, len as i64 - target_len as i64));
        }
        if len == target_len {
            return Ok((prompt, token_sequence, 0));
        }
        if len < target_len {
            token_sequence.extend((len..target_len).map(|_| rng.random_range(0..vocab)));
        } else {
            token_sequence.truncate(target_len);
        }
        remaining_tries -= 1;
    }
}

/// `f(0..n)` on all cores, results in index order.
fn parallel_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|start| {
                let f = &f;
                scope.spawn(move || (start..(start + per).min(n)).map(f).collect::<Vec<T>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("prompt builder panicked"))
            .collect()
    })
}

/// Special tokens `encode(.., add_special_tokens = true)` adds (transformers'
/// `num_special_tokens_to_add`).
fn num_special_tokens(tok: &Tokenizer) -> Result<usize> {
    Ok(tok.encode("", true)?.len())
}

fn warn_mismatch(total: i64) {
    if total != 0 {
        let sign = if total > 0 { "more" } else { "fewer" };
        eprintln!(
            "WARNING: Across all generated prompts, there were {} {sign} tokens than expected \
             after decoding and re-encoding. This is expected due to the imperfect nature of \
             the sampling procedure.",
            total.abs()
        );
    }
}

/// vLLM's random dataset. Per request: an input length drawn uniformly from
/// [floor(L * (1 - r)), ceil(L * (1 + r))] with L = --random-input-len minus the
/// tokenizer's special tokens, an output length likewise (at least 1), and an offset; the
/// prompt is a shared random prefix of --random-prefix-len ids followed by
/// `allowed[(offset + i + j) % allowed.len()]` for j in 0..input_len, where `allowed` is
/// every non-special id.
pub fn sample_random(
    tok: &Tokenizer,
    args: &ServeArgs,
    request_id_prefix: &str,
) -> Result<Vec<SampleRequest>> {
    let (n, ratio, prefix_len) = (
        args.num_prompts,
        args.random_range_ratio,
        args.random_prefix_len,
    );
    if !(0.0..1.0).contains(&ratio) {
        bail!("range_ratio must be in [0, 1).");
    }
    let num_special = num_special_tokens(tok)?;
    let real_input_len = args.random_input_len.saturating_sub(num_special) as f64;
    let input_low = (real_input_len * (1.0 - ratio)).floor() as usize;
    let input_high = (real_input_len * (1.0 + ratio)).ceil() as usize;
    let out_len = args.random_output_len as f64;
    let output_low = ((out_len * (1.0 - ratio)).floor() as usize).max(1);
    let output_high = ((out_len * (1.0 + ratio)).ceil() as usize).max(1);
    if prefix_len + input_low < 1 {
        bail!(
            "--random-input-len is too small: with tokenizer special tokens {num_special} and \
             --random-range-ratio {ratio}, the minimum possible total input tokens (prefix + \
             sampled) is {}. Increase --random-input-len and/or --random-prefix-len, or \
             decrease --random-range-ratio.",
            prefix_len + input_low
        );
    }

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let input_lens: Vec<usize> = (0..n)
        .map(|_| rng.random_range(input_low..=input_high))
        .collect();
    let output_lens: Vec<usize> = (0..n)
        .map(|_| rng.random_range(output_low..=output_high))
        .collect();
    let vocab = tok.vocab_size();
    let offsets: Vec<usize> = (0..n).map(|_| rng.random_range(0..vocab)).collect();

    let allowed: Vec<u32> = (0..vocab as u32)
        .filter(|&id| !tok.is_special_id(id))
        .collect();
    if allowed.is_empty() {
        bail!("the tokenizer has no non-special tokens");
    }
    let prefix: Vec<u32> = (0..prefix_len)
        .map(|_| allowed[rng.random_range(0..allowed.len())])
        .collect();

    // Decode/re-encode rounds dominate (a few ms per prompt), so prompts are built in
    // parallel; each gets its own RNG stream for padding, so the result does not depend
    // on the thread count.
    let built = parallel_map(n, |i| {
        let mut seq = prefix.clone();
        seq.extend((0..input_lens[i]).map(|j| allowed[(offsets[i] + i + j) % allowed.len()]));
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        rng.set_stream(1 + i as u64);
        decode_to_target_len(tok, seq, prefix_len + input_lens[i], &mut rng)
    });
    let mut requests = Vec::with_capacity(n);
    let mut mismatch_total = 0;
    for (i, b) in built.into_iter().enumerate() {
        let (prompt, ids, mismatch) = b?;
        mismatch_total += mismatch;
        requests.push(SampleRequest {
            prompt,
            prompt_len: ids.len(),
            expected_output_len: output_lens[i],
            request_id: Some(format!("{request_id_prefix}{i}")),
        });
    }
    warn_mismatch(mismatch_total);
    Ok(requests)
}

/// vLLM's prefix-repetition dataset: --prefix-repetition-num-prefixes random prefixes,
/// each followed by num_prompts / num_prefixes different random suffixes (both adjusted
/// to their exact token lengths), shuffled unless --disable-shuffle. Like vLLM, these
/// requests carry no request id.
pub fn sample_prefix_repetition(tok: &Tokenizer, args: &ServeArgs) -> Result<Vec<SampleRequest>> {
    let num_prefixes = args.prefix_repetition_num_prefixes;
    let per_prefix = args.num_prompts.checked_div(num_prefixes).unwrap_or(0);
    if per_prefix == 0 {
        bail!(
            "num_requests ({}) must be greater than or equal to num_prefixes ({num_prefixes})",
            args.num_prompts
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let vocab = tok.vocab_size() as u32;
    let mut mismatch_total = 0;
    let mut exact = |len: usize, rng: &mut ChaCha8Rng| -> Result<Vec<u32>> {
        let ids: Vec<u32> = (0..len).map(|_| rng.random_range(0..vocab)).collect();
        let (_, ids, mismatch) = decode_to_target_len(tok, ids, len, rng)?;
        mismatch_total += mismatch;
        Ok(ids)
    };
    let mut requests = Vec::new();
    for _ in 0..num_prefixes {
        let prefix = exact(args.prefix_repetition_prefix_len, &mut rng)?;
        for _ in 0..per_prefix {
            let mut ids = prefix.clone();
            ids.extend(exact(args.prefix_repetition_suffix_len, &mut rng)?);
            requests.push(SampleRequest {
                prompt: tok.decode(&ids, false)?,
                prompt_len: ids.len(),
                expected_output_len: args.prefix_repetition_output_len,
                request_id: None,
            });
        }
    }
    warn_mismatch(mismatch_total);
    if !args.disable_shuffle {
        requests.shuffle(&mut rng);
    }
    Ok(requests)
}
