//! Numbers spelled in Russian words, as in voice-message transcripts
//! ("восемь девятьсот семнадцать" is written as the digits 8 917).

use super::text::{Token, TokenKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Zero,
    Unit,
    Teen,
    Tens,
    Hundreds,
}

fn word_value(word: &str) -> Option<(u32, Class)> {
    let value = match word {
        "ноль" | "нуль" => return Some((0, Class::Zero)),
        "один" | "одна" | "одно" => 1,
        "два" | "две" => 2,
        "три" => 3,
        "четыре" => 4,
        "пять" => 5,
        "шесть" => 6,
        "семь" => 7,
        "восемь" => 8,
        "девять" => 9,
        "десять" => return Some((10, Class::Teen)),
        "одиннадцать" => return Some((11, Class::Teen)),
        "двенадцать" => return Some((12, Class::Teen)),
        "тринадцать" => return Some((13, Class::Teen)),
        "четырнадцать" => return Some((14, Class::Teen)),
        "пятнадцать" => return Some((15, Class::Teen)),
        "шестнадцать" => return Some((16, Class::Teen)),
        "семнадцать" => return Some((17, Class::Teen)),
        "восемнадцать" => return Some((18, Class::Teen)),
        "девятнадцать" => return Some((19, Class::Teen)),
        "двадцать" => return Some((20, Class::Tens)),
        "тридцать" => return Some((30, Class::Tens)),
        "сорок" => return Some((40, Class::Tens)),
        "пятьдесят" => return Some((50, Class::Tens)),
        "шестьдесят" => return Some((60, Class::Tens)),
        "семьдесят" => return Some((70, Class::Tens)),
        "восемьдесят" => return Some((80, Class::Tens)),
        "девяносто" => return Some((90, Class::Tens)),
        "сто" => return Some((100, Class::Hundreds)),
        "двести" => return Some((200, Class::Hundreds)),
        "триста" => return Some((300, Class::Hundreds)),
        "четыреста" => return Some((400, Class::Hundreds)),
        "пятьсот" => return Some((500, Class::Hundreds)),
        "шестьсот" => return Some((600, Class::Hundreds)),
        "семьсот" => return Some((700, Class::Hundreds)),
        "восемьсот" => return Some((800, Class::Hundreds)),
        "девятьсот" => return Some((900, Class::Hundreds)),
        _ => return None,
    };
    Some((value, Class::Unit))
}

pub(crate) fn is_number_word(word: &str) -> bool {
    word_value(word).is_some()
}

/// One spoken group such as "девятьсот семнадцать" (917) with its written width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub value: u32,
    /// Digits as the speaker meant them: "ноль" is "0", "сто два" is "102".
    pub digits: String,
    /// Index of the first and one past the last token of the group.
    pub first: usize,
    pub last: usize,
}

/// Reads one spoken group starting at token `i` (hundreds, then tens or a teen, then units).
/// Returns None when token `i` is not a number word.
pub(crate) fn group_at(tokens: &[Token], i: usize) -> Option<Group> {
    let token = tokens.get(i)?;
    if token.kind == TokenKind::Number {
        return Some(Group {
            value: token.folded.parse().unwrap_or(u32::MAX),
            digits: token.folded.to_string(),
            first: i,
            last: i + 1,
        });
    }
    let (value, class) = word_value(token.folded)?;
    if class == Class::Zero {
        return Some(Group {
            value: 0,
            digits: "0".into(),
            first: i,
            last: i + 1,
        });
    }
    let mut total = value;
    let mut j = i + 1;
    let mut stage = class;
    while let Some(next) = tokens.get(j).filter(|t| t.kind == TokenKind::Word) {
        let Some((v, c)) = word_value(next.folded) else {
            break;
        };
        let fits = matches!(
            (stage, c),
            (Class::Hundreds, Class::Tens | Class::Teen | Class::Unit) | (Class::Tens, Class::Unit)
        );
        if !fits {
            break;
        }
        total += v;
        stage = c;
        j += 1;
    }
    let width = match class {
        Class::Hundreds => 3,
        Class::Tens | Class::Teen => 2,
        _ => 1,
    };
    Some(Group {
        value: total,
        digits: format!("{total:0width$}"),
        first: i,
        last: j,
    })
}

/// Reads consecutive spoken groups from token `i` while the gaps between tokens are only
/// spaces or commas. Returns the groups (possibly empty).
pub(crate) fn groups_from(text: &str, tokens: &[Token], i: usize, max_groups: usize) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut j = i;
    while groups.len() < max_groups {
        if j > i {
            let gap = &text[tokens[j - 1].end..tokens.get(j).map_or(text.len(), |t| t.start)];
            if !gap.chars().all(|c| c == ' ' || c == ',' || c == '-') {
                break;
            }
        }
        match group_at(tokens, j) {
            Some(group) if tokens[j].kind == TokenKind::Word => {
                j = group.last;
                groups.push(group);
            }
            _ => break,
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn digits(text: &str) -> String {
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
        groups_from(text, &tokens, 0, 20)
            .iter()
            .map(|g| g.digits.as_str())
            .collect()
    }

    #[test]
    fn spoken_phone_digits() {
        assert_eq!(
            digits(
                "восемь девятьсот семнадцать четыреста восемьдесят два шестнадцать тридцать девять"
            ),
            "89174821639"
        );
        assert_eq!(
            digits("восемь девятьсот семнадцать четыреста пятьдесят шесть ноль один двадцать три"),
            "89174560123"
        );
    }

    #[test]
    fn hundreds_without_tens_keep_width() {
        assert_eq!(digits("сто два"), "102");
        assert_eq!(digits("девятьсот пять"), "905");
    }
}
