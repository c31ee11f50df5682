//! Enums that travel as fixed snake_case words (an outcome, a `group_by` dimension): one table of
//! variant and word gives the list of values, the spelling, `Display` and `FromStr`, so the
//! parse can never disagree with the spelling.

/// The value of `all` that `as_str` spells `s`, if any.
pub(crate) fn parse<T: Copy>(all: &[T], s: &str, as_str: impl Fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|&v| as_str(v) == s)
}

/// Every spelling of `all`, comma-separated, for an error that lists what would have parsed.
pub(crate) fn known<T: Copy>(all: &[T], as_str: impl Fn(T) -> &'static str) -> String {
    let words: Vec<&str> = all.iter().map(|&v| as_str(v)).collect();
    words.join(", ")
}

/// Implements, for a fieldless enum, `ALL` (every value, in table order), `as_str` (its word),
/// `Display` (the word) and `FromStr` (the word back; anything else is `$err`, an expression
/// of type `$err_ty` that may use the unparsed `&str` under the name given as `$s`).
macro_rules! spelled {
    (
        $ty:ident { $($variant:ident => $word:literal),+ $(,)? }
        unknown($s:ident) -> $err_ty:ty { $err:expr }
    ) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: [$ty; [$(stringify!($variant)),+].len()] = [$($ty::$variant),+];

            /// The wire spelling (the same as the serde one).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $err_ty;

            fn from_str($s: &str) -> Result<Self, Self::Err> {
                $crate::spelling::parse(&$ty::ALL, $s, $ty::as_str).ok_or_else(|| $err)
            }
        }
    };
}

pub(crate) use spelled;
