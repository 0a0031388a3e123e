//! Person names: first names (with diminutives, in all cases, Cyrillic or Latin),
//! patronymics, surnames by suffix, and initials, joined into one span per person.
//!
//! Rules, in short:
//! - a dictionary first name counts when capitalised, or in lowercase in its nominative form;
//! - a first name that is also a common word ("Роза", "Вера") needs context: capitalised
//!   mid-sentence, after "меня зовут"/"к"/"мастер", next to another name part, as a greeting
//!   at the start or a signature at the end;
//! - a surname by suffix counts only when capitalised and next to a first name, patronymic or
//!   initials, or after "к"/"у"/"фамилия"/"врач", or as a signature at the end.

use super::names::{
    NAMES, NameInfo, is_latin_surname_like, is_patronymic, is_patronymic_particle, is_surname_like,
};
use super::text::{Token, TokenKind, is_all_caps, is_capitalized, is_cyrillic_word, words_before};
use super::{Detection, PiiKind};
use std::cell::OnceCell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    First { ambiguous: bool },
    Patronymic,
    Surname,
    Initial,
}

/// Words after which a capitalised word is a person's name.
fn is_name_trigger(word: &str) -> bool {
    const EXACT: &[&str] = &[
        "зовут",
        "я",
        "это",
        "к",
        "ко",
        "у",
        "с",
        "от",
        "для",
        "фио",
        "имя",
        "фамилия",
        "спасибо",
        "передайте",
        "name",
        "is",
        "i'm",
        "im",
        "under",
        "thanks",
        "dear",
        "привет",
        "мама",
        "папа",
        "сын",
        "дочь",
        "муж",
        "жена",
    ];
    const PREFIXES: &[&str] = &[
        "мастер",
        "врач",
        "доктор",
        "косметолог",
        "стоматолог",
        "гинеколог",
        "терапевт",
        "хирург",
        "ортодонт",
        "массажист",
        "парикмахер",
        "стилист",
        "администратор",
        "благодар",
        "пациент",
        "гражданин",
        "гражданк",
        "клиент",
    ];
    EXACT.contains(&word) || PREFIXES.iter().any(|p| word.starts_with(p))
}

/// Words after which a lone capitalised surname is a person ("к Галимову", "у Хасанова").
fn is_surname_trigger(word: &str) -> bool {
    const EXACT: &[&str] = &["к", "ко", "у", "фио", "фамилия", "зовут", "от", "с"];
    const PREFIXES: &[&str] = &[
        "врач",
        "доктор",
        "мастер",
        "стоматолог",
        "гинеколог",
        "терапевт",
        "косметолог",
        "хирург",
        "ортодонт",
        "пациент",
        "гражданин",
        "гражданк",
    ];
    EXACT.contains(&word) || PREFIXES.iter().any(|p| word.starts_with(p))
}

struct Context<'a> {
    text: &'a str,
    tokens: &'a [Token<'a>],
    /// Most letters are uppercase, so capitalisation carries no signal. It is computed on
    /// first use, because most texts never need it.
    shouting: OnceCell<bool>,
}

impl Context<'_> {
    fn shouting(&self) -> bool {
        *self.shouting.get_or_init(|| shouting(self.text))
    }

    fn original(&self, i: usize) -> &str {
        let token = &self.tokens[i];
        &self.text[token.start..token.end]
    }

    fn is_initial(&self, i: usize) -> bool {
        let token = &self.tokens[i];
        if token.kind != TokenKind::Word || self.text.as_bytes().get(token.end) != Some(&b'.') {
            return false;
        }
        let mut chars = self.original(i).chars();
        chars.next().is_some_and(char::is_uppercase) && chars.next().is_none()
    }

    /// "Ф.И.О." is a field label, not three initials.
    fn is_fio_label(&self, i: usize) -> bool {
        let letters = |from: usize| -> String {
            (from..from + 3)
                .filter_map(|k| self.tokens.get(k))
                .map(|t| t.folded)
                .collect()
        };
        (0..3).any(|back| i >= back && letters(i - back) == "фио" && self.is_initial(i - back))
    }

    /// Returns the role of token `i`. `lowercase_ok` lets a lowercase ambiguous name count
    /// ("зовут роза"); `after_name` lets a lowercase patronymic count ("марина сергеевна").
    fn role(&self, i: usize, lowercase_ok: bool, after_name: bool) -> Option<Role> {
        let token = &self.tokens[i];
        if token.kind != TokenKind::Word {
            return None;
        }
        let word = self.original(i);
        let caps = is_capitalized(word);

        if !caps && !after_name && token.folded.len() < 4 {
            // Short lowercase words ("и", "на", "к") are never name parts.
            return None;
        }
        let cyrillic = is_cyrillic_word(word);
        if self.is_initial(i) {
            return (!self.is_fio_label(i)).then_some(Role::Initial);
        }
        // A lowercase non-Cyrillic word is never a first name (see `first_name_allowed`), so its
        // dictionary lookup is skipped.
        if (caps || cyrillic)
            && let Some(info) = NAMES.get(token.folded)
            && first_name_allowed(*info, caps, cyrillic, lowercase_ok)
        {
            return Some(Role::First {
                ambiguous: info.ambiguous,
            });
        }
        if !caps && !after_name {
            return None;
        }

        if is_patronymic(token.folded) || is_patronymic_particle(token.folded) {
            return Some(Role::Patronymic);
        }
        let surname = if cyrillic {
            is_surname_like(token.folded)
        } else {
            is_latin_surname_like(token.folded)
        };
        (caps && surname).then_some(Role::Surname)
    }

    /// Name parts are adjacent when only spaces separate them (or an initial's dot).
    fn adjacent(&self, a: usize, b: usize) -> bool {
        let gap = &self.text[self.tokens[a].end..self.tokens[b].start];
        let gap = if self.is_initial(a) {
            gap.strip_prefix('.').unwrap_or(gap)
        } else {
            gap
        };
        gap.chars().count() <= 3 && gap.chars().all(|c| c == ' ' || c == '\u{a0}' || c == '\t')
    }

    fn sentence_start(&self, i: usize) -> bool {
        if i == 0 {
            return true;
        }
        let gap = &self.text[self.tokens[i - 1].end..self.tokens[i].start];
        gap.contains(['.', '!', '?', '\n', ':'])
    }

    /// Checks for a greeting at the very start: "Лиана, добрый вечер!".
    fn vocative(&self, first: usize, last: usize) -> bool {
        let before = &self.text[..self.tokens[first].start];
        let after = self.text[self.tokens[last].end..].trim_start();
        before.chars().all(|c| !c.is_alphanumeric()) && after.starts_with([',', '!'])
    }

    /// Checks for a signature: the chain ends the message and follows a comma, a sentence end
    /// or a number.
    fn signature(&self, first: usize, last: usize) -> bool {
        let is_last_word = self.tokens[last + 1..].is_empty();
        if !is_last_word {
            return false;
        }
        if first == 0 {
            return false;
        }
        let previous = &self.tokens[first - 1];
        let gap = &self.text[previous.end..self.tokens[first].start];
        previous.kind == TokenKind::Number || gap.contains([',', '.', '!', '?', '\n', '—', '-'])
    }
}

fn first_name_allowed(info: NameInfo, caps: bool, cyrillic: bool, lowercase_ok: bool) -> bool {
    if caps {
        return true;
    }
    // Lowercase names ("это марина") only in the nominative and never for Latin words.
    cyrillic && info.nominative && (!info.ambiguous || lowercase_ok)
}

pub(crate) fn detect(text: &str, tokens: &[Token], out: &mut Vec<Detection>) {
    let ctx = Context {
        text,
        tokens,
        shouting: OnceCell::new(),
    };
    let mut i = 0;
    while i < tokens.len() {
        let lowercase_ok = i > 0 && matches!(tokens[i - 1].folded, "зовут" | "это");
        let Some(first_role) = ctx.role(i, lowercase_ok, false) else {
            i += 1;
            continue;
        };
        let mut roles = vec![first_role];
        let mut last = i;
        while last + 1 < tokens.len() && ctx.adjacent(last, last + 1) {
            let after_name = matches!(roles[roles.len() - 1], Role::First { .. });
            match ctx.role(last + 1, false, after_name) {
                Some(role) => {
                    roles.push(role);
                    last += 1;
                }
                None => break,
            }
        }
        if let Some(confidence) = accept(&ctx, i, last, &roles) {
            let mut end = tokens[last].end;
            if ctx.is_initial(last) {
                end += 1;
            }
            let start = tokens[i].start;
            // NOTE: the key is the folded text, so case forms of one name ("Лиля", "Лиле")
            // get different placeholders.
            out.push(
                Detection::new(PiiKind::Person, start, end, confidence)
                    .with_normalized(super::text::fold(&text[start..end])),
            );
        }
        i = last + 1;
    }
}

fn shouting(text: &str) -> bool {
    let mut upper = 0usize;
    let mut lower = 0usize;
    for c in text.chars() {
        match c {
            'A'..='Z' | 'А'..='Я' | 'Ё' => upper += 1,
            'a'..='z' | 'а'..='я' | 'ё' => lower += 1,
            c if c.is_ascii() => {}
            c if c.is_uppercase() => upper += 1,
            c if c.is_lowercase() => lower += 1,
            _ => {}
        }
    }
    upper > 20 && upper > lower * 3
}

/// Decides whether a chain of name parts is a person; returns the confidence.
fn accept(ctx: &Context, first: usize, last: usize, roles: &[Role]) -> Option<f32> {
    let count = |f: fn(&Role) -> bool| roles.iter().filter(|r| f(r)).count();
    let plain_first = count(|r| matches!(r, Role::First { ambiguous: false }));
    let ambiguous_first = count(|r| matches!(r, Role::First { ambiguous: true }));
    let patronymics = count(|r| matches!(r, Role::Patronymic));
    let surnames = count(|r| matches!(r, Role::Surname));
    let initials = count(|r| matches!(r, Role::Initial));

    if plain_first > 0 {
        let single_latin = roles.len() == 1 && !is_cyrillic_word(ctx.original(first));
        if single_latin && ctx.sentence_start(first) && !has_trigger(ctx, first) {
            // A lone Latin name at a sentence start ("Max 5 people") is weaker evidence.
            return Some(0.6);
        }
        return Some(0.9);
    }
    if patronymics > 0 && ambiguous_first + surnames > 0 {
        return Some(0.9);
    }
    if surnames > 0 && initials > 0 {
        return Some(0.9);
    }
    if ambiguous_first > 0 && surnames > 0 {
        return Some(0.85);
    }
    if ambiguous_first > 0 && ambiguous_context(ctx, first, last) {
        return Some(0.7);
    }
    if surnames > 0 && patronymics == 0 && lone_surname_context(ctx, first, last) {
        return Some(0.75);
    }
    None
}

fn has_trigger(ctx: &Context, first: usize) -> bool {
    let before = words_before(ctx.text, ctx.tokens, ctx.tokens[first].start, 1);
    before.first().is_some_and(|w| is_name_trigger(w))
}

fn ambiguous_context(ctx: &Context, first: usize, last: usize) -> bool {
    if has_trigger(ctx, first) {
        return true;
    }
    let latin = !is_cyrillic_word(ctx.original(first));
    if latin {
        return false;
    }
    let mid_sentence_capital =
        !ctx.shouting() && !ctx.sentence_start(first) && !is_all_caps(ctx.original(first));
    mid_sentence_capital || ctx.vocative(first, last) || ctx.signature(first, last)
}

fn lone_surname_context(ctx: &Context, first: usize, last: usize) -> bool {
    let before = words_before(ctx.text, ctx.tokens, ctx.tokens[first].start, 2);
    let direct = first > 0 && {
        let gap = &ctx.text[ctx.tokens[first - 1].end..ctx.tokens[first].start];
        !gap.contains(['.', '!', '?', '\n'])
    };
    let trigger = direct
        && match before.as_slice() {
            [word, ..] if is_surname_trigger(word) => true,
            ["на", previous, ..] => previous.starts_with("запис"),
            _ => false,
        };
    let long_enough = ctx.original(first).chars().count() >= 5;
    trigger || (long_enough && !ctx.shouting() && ctx.signature(first, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::text::tokenize;

    fn people(text: &str) -> Vec<String> {
        let mut buffer = String::new();
        let tokens = tokenize(text, &mut buffer);
        let mut out = Vec::new();
        detect(text, &tokens, &mut out);
        out.into_iter()
            .map(|d| text[d.start..d.end].to_string())
            .collect()
    }

    #[test]
    fn full_names_in_cases() {
        assert_eq!(
            people("запись для Абдурахмановой Натальи Петровны на среду"),
            vec!["Абдурахмановой Натальи Петровны"]
        );
        assert_eq!(
            people("к Шарипову Айдару Маратовичу"),
            vec!["Шарипову Айдару Маратовичу"]
        );
        assert_eq!(
            people("Имя: Тимур Рашитович Ахметзянов\nТелефон"),
            vec!["Тимур Рашитович Ахметзянов"]
        );
    }

    #[test]
    fn initials_before_and_after() {
        assert_eq!(people("пациент Иванов И.И. пришёл"), vec!["Иванов И.И."]);
        assert_eq!(people("врач И.И. Иванов принял"), vec!["И.И. Иванов"]);
        assert_eq!(people("Ф.И.О. Миннуллина Э.Р."), vec!["Миннуллина Э.Р."]);
    }

    #[test]
    fn caps_yo_and_emoji() {
        assert_eq!(people("ИВАНОВА МАРИЯ"), vec!["ИВАНОВА МАРИЯ"]);
        assert_eq!(people("это Семён"), vec!["Семён"]);
        assert_eq!(people("это Семен"), vec!["Семен"]);
        assert_eq!(people("к Анне Королёвой"), vec!["Анне Королёвой"]);
        assert_eq!(people("к Лиле🙏"), vec!["Лиле"]);
        assert_eq!(people("💅Маша придёт"), vec!["Маша"]);
    }

    #[test]
    fn ambiguous_names_need_context() {
        assert!(people("Роза ветров").is_empty());
        assert!(people("подарю розу и веру в лучшее").is_empty());
        assert_eq!(people("меня зовут Роза"), vec!["Роза"]);
        assert_eq!(people("Спасибо большое Венере за стрижку"), vec!["Венере"]);
        assert_eq!(
            people("ХАЙРУЛЛИНА РОЗА ФАНИЛЕВНА"),
            vec!["ХАЙРУЛЛИНА РОЗА ФАНИЛЕВНА"]
        );
    }

    #[test]
    fn lone_surnames_need_context() {
        assert_eq!(people("пломбу у Хасанова"), vec!["Хасанова"]);
        assert_eq!(people("Записана на Валиеву"), vec!["Валиеву"]);
        assert_eq!(people("номер заявки 7781043. Галиева"), vec!["Галиева"]);
        assert!(people("Машина не заводится").is_empty());
        assert!(people("Привет, Дёмский район").is_empty());
    }

    #[test]
    fn latin_names() {
        assert_eq!(people("Ivan Petrov called"), vec!["Ivan Petrov"]);
        assert_eq!(people("Dilyara privet"), vec!["Dilyara"]);
        assert_eq!(people("Thanks, Emily"), vec!["Emily"]);
        assert!(people("booked for April 5th").is_empty());
    }
}
