//! Lenient serde types for provider usage objects and their normalisation into [`Usage`].
//!
//! Providers and "compatible" gateways disagree on details (nulls, floats, strings, extra
//! fields), and one odd field must not cost us the whole usage object, so every count and nested
//! object here reads anything unexpected as absent instead of failing the parse.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::iterations::{IterationSums, Iterations};
use super::Usage;
use crate::api::{Api, Family};

/// Implements the visitor methods for values we read as "absent" (the value's `Default`) rather
/// than as an error: booleans, strings, bytes and null, and with `numbers` numbers too.
macro_rules! absent_otherwise {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (numbers) => {
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        absent_otherwise!();
    };
}

pub(crate) use absent_otherwise;

/// A lenient value type: `$ty` deserializes whatever JSON value comes through `$visitor`, which
/// expects `$expecting`, reads `Some` through `$ty` itself, answers with the given methods and
/// reads everything else as absent ([`absent_otherwise!`], numbers included when `numbers` is
/// given).
macro_rules! lenient_value {
    (
        $ty:ident via $visitor:ident expecting $expecting:literal $(, $numbers:ident absent)?;
        $($method:item)*
    ) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($visitor)
            }
        }

        struct $visitor;

        impl<'de> Visitor<'de> for $visitor {
            type Value = $ty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($expecting)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<$ty, D::Error> {
                $ty::deserialize(d)
            }
            $($method)*
            absent_otherwise!($($numbers)?);
        }
    };
}

pub(crate) use lenient_value;

/// Drains a sequence nobody needs so that parsing can go on after it.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<usize, A::Error> {
    let mut n = 0usize;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        n = n.saturating_add(1);
    }
    Ok(n)
}

/// Drains a map nobody needs so that parsing can go on after it.
pub(crate) fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A token count: non-negative numbers are kept (floats and huge integers saturate into `u64`);
/// negatives, strings, objects and null read as absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub(crate) Option<u64>);

lenient_value! {
    Count via CountVisitor expecting "a token count";
    fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
        Ok(Count(Some(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
        Ok(Count(u64::try_from(v).ok()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
        // `as` saturates at u64::MAX; NaN and negatives are garbage, not zero.
        Ok(Count((v.is_finite() && v >= 0.0).then_some(v as u64)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
        drain_seq(seq).map(|_| Count(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
        drain_map(map).map(|_| Count(None))
    }
}

/// An object of type `T` when the value is an object, absent for anything else (null included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lenient<T>(pub(crate) Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Lenient::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|_| Lenient(None))
    }
    absent_otherwise!(numbers);
}

/// The length of an array without materialising it; absent when the value is not an array.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SeqLen(pub(crate) Option<usize>);

lenient_value! {
    SeqLen via SeqLenVisitor expecting "an array", numbers absent;
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SeqLen, A::Error> {
        drain_seq(seq).map(|n| SeqLen(Some(n)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SeqLen, A::Error> {
        drain_map(map).map(|_| SeqLen(None))
    }
}

/// The `*_tokens_details` objects; only the counts we bill on are read: cache reads and (Responses)
/// writes on the input side, reasoning (OpenAI) or thinking (Anthropic) on the output side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct Details {
    cached_tokens: Count,
    cache_write_tokens: Count,
    reasoning_tokens: Count,
    thinking_tokens: Count,
}

/// Every usage field any supported shape sends; the shape decides which ones count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct RawUsage {
    prompt_tokens: Count,
    completion_tokens: Count,
    input_tokens: Count,
    output_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
    prompt_tokens_details: Lenient<Details>,
    completion_tokens_details: Lenient<Details>,
    input_tokens_details: Lenient<Details>,
    output_tokens_details: Lenient<Details>,
    /// Anthropic compaction and other multi-pass requests: the billed breakdown.
    iterations: Iterations,
}

impl RawUsage {
    /// The usage a captured `"usage"` object reports, normalised, if it is a usage report at all
    /// (unparseable, or without any count, gives `None`).
    pub(crate) fn parse_counted(object: &[u8], api: Api) -> Option<Usage> {
        let raw: RawUsage = serde_json::from_slice(object).unwrap_or_default();
        raw.has_counts().then(|| raw.normalise(api))
    }

    /// Whether this object carries any top-level count; a `"usage"` key holding something else
    /// (a JSON schema property, say) is not a usage report.
    pub(crate) fn has_counts(&self) -> bool {
        [
            self.prompt_tokens,
            self.completion_tokens,
            self.input_tokens,
            self.output_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ]
        .iter()
        .any(|c| c.0.is_some())
    }

    /// Normalises per the rules in the module documentation of `usage`. The surface decides the
    /// naming scheme: `prompt_tokens`/`completion_tokens` (chat, completions, embeddings),
    /// `input_tokens`/`output_tokens` with `*_details` (Responses), or Anthropic's separate cache
    /// read and write counts (Messages).
    pub(crate) fn normalise(&self, api: Api) -> Usage {
        let details = |d: Lenient<Details>| d.0.unwrap_or_default();
        let (prompt, completion) = (
            details(self.prompt_tokens_details),
            details(self.completion_tokens_details),
        );
        let (input, output) = (
            details(self.input_tokens_details),
            details(self.output_tokens_details),
        );
        match api.family() {
            Family::OpenAi => {
                // Prefer the surface's own names but accept the other's: compatible servers mix
                // them.
                let (first_in, second_in, first_out, second_out) = if api != Api::Responses {
                    (
                        self.prompt_tokens,
                        self.input_tokens,
                        self.completion_tokens,
                        self.output_tokens,
                    )
                } else {
                    (
                        self.input_tokens,
                        self.prompt_tokens,
                        self.output_tokens,
                        self.completion_tokens,
                    )
                };
                Usage {
                    input_tokens: first_in.0.or(second_in.0).unwrap_or(0),
                    output_tokens: first_out.0.or(second_out.0).unwrap_or(0),
                    cached_tokens: prompt
                        .cached_tokens
                        .0
                        .or(input.cached_tokens.0)
                        .unwrap_or(0),
                    cache_write_tokens: input.cache_write_tokens.0.unwrap_or(0),
                    reasoning_tokens: completion
                        .reasoning_tokens
                        .0
                        .or(output.reasoning_tokens.0)
                        .unwrap_or(0),
                }
            }
            Family::Anthropic => AnthropicAcc::default().merged(self).usage(),
        }
    }
}

/// Anthropic streams report usage in pieces (`message_start`, then cumulative `message_delta`s
/// that may repeat or revise input counts); the latest value of each field wins. A report with
/// `iterations[]` replaces all four counts by the iteration sums, because its top-level counts
/// cover only the last iteration while the provider bills every one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AnthropicAcc {
    input: Option<u64>,
    cache_write: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
    thinking: Option<u64>,
}

impl AnthropicAcc {
    pub(crate) fn merged(mut self, raw: &RawUsage) -> Self {
        if let Some(IterationSums {
            input,
            output,
            cache_write,
            cache_read,
        }) = raw.iterations.0
        {
            self.input = Some(input);
            self.output = Some(output);
            self.cache_write = Some(cache_write);
            self.cache_read = Some(cache_read);
        } else {
            self.input = raw.input_tokens.0.or(self.input);
            self.cache_write = raw.cache_creation_input_tokens.0.or(self.cache_write);
            self.cache_read = raw.cache_read_input_tokens.0.or(self.cache_read);
            self.output = raw.output_tokens.0.or(self.output);
        }
        let thinking = raw
            .output_tokens_details
            .0
            .and_then(|d| d.thinking_tokens.0);
        self.thinking = thinking.or(self.thinking);
        self
    }

    pub(crate) fn input_known(&self) -> bool {
        self.input.is_some()
    }

    pub(crate) fn usage(&self) -> Usage {
        let (write, read) = (self.cache_write.unwrap_or(0), self.cache_read.unwrap_or(0));
        Usage {
            input_tokens: self
                .input
                .unwrap_or(0)
                .saturating_add(write)
                .saturating_add(read),
            output_tokens: self.output.unwrap_or(0),
            cached_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: self.thinking.unwrap_or(0),
        }
    }
}
