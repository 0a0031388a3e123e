//! Name dictionaries built once from `data/redact/`: first names in all six cases (generated
//! by declension rules), their Latin transliterations, and suffix rules for patronymics and
//! surnames.

use super::text::{WordMap, WordSet, fold};
use std::sync::LazyLock;

const FIRST_NAMES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/redact/first_names.txt"
));
const LATIN_NAMES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/redact/latin_names.txt"
));

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NameInfo {
    /// The form is a nominative (dictionary) form, not only an oblique case.
    pub nominative: bool,
    /// The form is also a common word ("вера", "роза") and needs context.
    pub ambiguous: bool,
}

/// Folded name form (Cyrillic or lowercase Latin) → facts about it.
pub(crate) static NAMES: LazyLock<WordMap<String, NameInfo>> = LazyLock::new(build_names);

fn insert(map: &mut WordMap<String, NameInfo>, form: String, nominative: bool, ambiguous: bool) {
    let entry = map.entry(form).or_default();
    entry.nominative |= nominative;
    entry.ambiguous |= ambiguous;
}

fn build_names() -> WordMap<String, NameInfo> {
    let mut map = WordMap::default();
    for line in FIRST_NAMES.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let male = parts.next() == Some("m");
        for raw in parts {
            let ambiguous = raw.starts_with('?');
            let raw = raw.trim_start_matches('?');
            let indeclinable = raw.ends_with('!');
            let raw = raw.trim_end_matches('!');
            let (form, stem) = match raw.split_once('=') {
                Some((form, stem)) => (fold(form), Some(fold(stem))),
                None => (fold(raw), None),
            };
            for variant in transliterate(&form) {
                insert(&mut map, variant, true, ambiguous);
            }
            let cases = if indeclinable {
                Vec::new()
            } else {
                decline(&form, stem.as_deref(), male)
            };
            insert(&mut map, form, true, ambiguous);
            for case in cases {
                insert(&mut map, case, false, ambiguous);
            }
        }
    }
    for line in LATIN_NAMES.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for raw in line.split_whitespace() {
            let ambiguous = raw.starts_with('?');
            insert(
                &mut map,
                raw.trim_start_matches('?').to_lowercase(),
                true,
                ambiguous,
            );
        }
    }
    map
}

fn strip_last(s: &str, n: usize) -> &str {
    let cut = s
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    &s[..cut]
}

/// Generates the oblique case forms of a folded first name.
fn decline(form: &str, stem: Option<&str>, male: bool) -> Vec<String> {
    let last = form.chars().last().unwrap_or(' ');
    let base = strip_last(form, 1);
    let before_last = base.chars().last().unwrap_or(' ');
    let mut out = Vec::new();
    let mut add = |stem: &str, endings: &[&str]| {
        for ending in endings {
            out.push(format!("{stem}{ending}"));
        }
    };
    match last {
        'а' => {
            let genitive = if "гкхжчшщ".contains(before_last) {
                "и"
            } else {
                "ы"
            };
            let instrumental = if "жчшщц".contains(before_last) {
                "ей"
            } else {
                "ой"
            };
            add(base, &[genitive, "е", "у", instrumental, "ою", "ею"]);
        }
        // "к Зульфие" is a common colloquial dative next to the standard "к Зульфии".
        'я' if form.ends_with("ия") => add(base, &["и", "е", "ю", "ей", "ею"]),
        'я' => add(base, &["и", "е", "ю", "ей", "ею"]),
        'й' if form.ends_with("ий") => add(strip_last(form, 2), &["ия", "ию", "ием", "ии"]),
        'й' => add(base, &["я", "ю", "ем", "е"]),
        'ь' if male => add(stem.unwrap_or(base), &["я", "ю", "ем", "е"]),
        'ь' => add(stem.unwrap_or(base), &["и", "ью"]),
        'о' | 'у' | 'и' | 'э' | 'е' | 'ы' | 'ю' => {}
        _ if male => {
            let stem = stem.unwrap_or(form);
            let soft = "жчшщц".contains(stem.chars().last().unwrap_or(' '));
            add(stem, &["а", "у", if soft { "ем" } else { "ом" }, "е"]);
        }
        _ => {}
    }
    out
}

/// Latin spellings of a folded Cyrillic name in the common schemes ("Юлия": yuliya, yulia,
/// iuliia, …), lowercase.
pub(crate) fn transliterate(form: &str) -> Vec<String> {
    if !form.chars().any(|c| ('а'..='я').contains(&c)) {
        return Vec::new();
    }
    let mut variants = vec![String::new(); 4];
    let chars: Vec<char> = form.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        let next = chars.get(index + 1).copied();
        // Scheme 0: ya/yu/y/kh; 1: ia/iu/i/h; 2: like 0 with "x" for "кс" and "j" for "й";
        // 3: like 1 with "ie" endings ("Yuliya"/"Julia" style "ju").
        let options: [&str; 4] = match c {
            'а' => ["a"; 4],
            'б' => ["b"; 4],
            'в' => ["v"; 4],
            'г' => ["g"; 4],
            'д' => ["d"; 4],
            'е' if index == 0 => ["e", "e", "ye", "e"],
            'е' => ["e"; 4],
            'ж' => ["zh"; 4],
            'з' => ["z"; 4],
            'и' => ["i"; 4],
            'й' => ["y", "i", "j", "i"],
            'к' if next == Some('с') => ["k", "k", "x", "k"],
            'к' => ["k"; 4],
            'л' => ["l"; 4],
            'м' => ["m"; 4],
            'н' => ["n"; 4],
            'о' => ["o"; 4],
            'п' => ["p"; 4],
            'р' => ["r"; 4],
            'с' if index > 0 && chars[index - 1] == 'к' => ["s", "s", "", "s"],
            'с' => ["s"; 4],
            'т' => ["t"; 4],
            'у' => ["u"; 4],
            'ф' => ["f"; 4],
            'х' => ["kh", "h", "kh", "h"],
            'ц' => ["ts", "c", "ts", "tz"],
            'ч' => ["ch"; 4],
            'ш' => ["sh"; 4],
            'щ' => ["shch", "sch", "shch", "sch"],
            'ъ' | 'ь' => [""; 4],
            'ы' => ["y"; 4],
            'э' => ["e"; 4],
            'ю' => ["yu", "iu", "yu", "ju"],
            'я' if index > 0 && chars[index - 1] == 'и' => ["ya", "a", "ya", "a"],
            'я' => ["ya", "ia", "ya", "ja"],
            _ => ["", "", "", ""],
        };
        for (variant, option) in variants.iter_mut().zip(options) {
            variant.push_str(option);
        }
    }
    variants.sort();
    variants.dedup();
    variants
}

/// A set of word endings with one hash lookup per distinct ending length, which is faster
/// than testing every ending with `ends_with`.
pub(crate) struct EndingSet {
    /// Ending → its length in chars.
    endings: WordMap<&'static str, usize>,
    /// Distinct byte lengths of the endings.
    byte_lengths: Vec<usize>,
}

impl EndingSet {
    fn new(endings: &[&'static str]) -> EndingSet {
        let mut byte_lengths: Vec<usize> = endings.iter().map(|e| e.len()).collect();
        byte_lengths.sort_unstable();
        byte_lengths.dedup();
        EndingSet {
            endings: endings.iter().map(|e| (*e, e.chars().count())).collect(),
            byte_lengths,
        }
    }

    /// Checks whether `word` ends with an ending of the set for which `accept` holds;
    /// `accept` gets the ending's length in chars.
    fn any(&self, word: &str, accept: impl Fn(usize) -> bool) -> bool {
        self.byte_lengths.iter().any(|&n| {
            let Some(from) = word.len().checked_sub(n) else {
                return false;
            };
            word.is_char_boundary(from)
                && self
                    .endings
                    .get(&word[from..])
                    .is_some_and(|&chars| accept(chars))
        })
    }
}

/// Patronymic endings in all cases: -ович/-евич, -овна/-евна, -ична/-инична.
pub(crate) fn is_patronymic(folded: &str) -> bool {
    static ENDINGS: LazyLock<EndingSet> = LazyLock::new(|| EndingSet::new(PATRONYMIC_ENDINGS));
    const PATRONYMIC_ENDINGS: &[&str] = &[
        "ович",
        "овича",
        "овичу",
        "овичем",
        "овиче",
        "евич",
        "евича",
        "евичу",
        "евичем",
        "евиче",
        "овна",
        "овны",
        "овне",
        "овну",
        "овной",
        "евна",
        "евны",
        "евне",
        "евну",
        "евной",
        "ична",
        "ичны",
        "ичне",
        "ичну",
        "ичной",
    ];
    const NOT_PATRONYMIC: &[&str] = &[
        "условна",
        "безусловна",
        "виновна",
        "духовна",
        "греховна",
        "отлична",
        "типична",
        "различна",
        "логична",
        "публична",
        "симпатична",
        "критична",
        "аналогична",
        "практична",
        "пластична",
        "энергична",
        "гармонична",
        "идентична",
        "динамична",
        "хронична",
        "эстетична",
        "циничная",
        "ритмична",
    ];
    folded.chars().count() >= 6
        && ENDINGS.any(folded, |_| true)
        && !NOT_PATRONYMIC.contains(&folded)
}

/// Turkic patronymic particles written after the father's name ("Ali oglu", "Мамед оглы").
pub(crate) fn is_patronymic_particle(folded: &str) -> bool {
    matches!(folded, "оглы" | "кызы" | "улы" | "гызы" | "oglu" | "kyzy")
}

/// Surname endings in all cases (-ов/-ев/-ин/-ский/-цкий and their feminine forms, plus
/// -енко, -ук/-юк, -ян, -дзе, -швили). Used only with capitalisation and context.
pub(crate) fn is_surname_like(folded: &str) -> bool {
    static ENDINGS: LazyLock<EndingSet> = LazyLock::new(|| EndingSet::new(SURNAME_ENDINGS));
    static COMMON: LazyLock<WordSet<&'static str>> =
        LazyLock::new(|| COMMON_WORDS.iter().copied().collect());
    const SURNAME_ENDINGS: &[&str] = &[
        "ов",
        "ова",
        "ову",
        "овым",
        "ове",
        "овой",
        "ев",
        "ева",
        "еву",
        "евым",
        "еве",
        "евой",
        "ин",
        "ина",
        "ину",
        "иным",
        "ине",
        "иной",
        "ын",
        "ына",
        "ыну",
        "ыным",
        "ыне",
        "ыной",
        "ский",
        "ского",
        "скому",
        "ским",
        "ском",
        "ская",
        "ской",
        "скую",
        "цкий",
        "цкого",
        "цкому",
        "цким",
        "цком",
        "цкая",
        "цкой",
        "цкую",
        "енко",
        "ук",
        "ука",
        "уку",
        "уком",
        "юк",
        "юка",
        "юку",
        "юком",
        "ян",
        "яна",
        "яну",
        "яном",
        "дзе",
        "швили",
        "их",
        "ых",
    ];
    let length = folded.chars().count();
    length >= 4
        && ENDINGS.any(folded, |ending_chars| length >= ending_chars + 2)
        && !COMMON.contains(folded)
}

/// Latin surname endings of transliterated Russian surnames.
pub(crate) fn is_latin_surname_like(folded: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "ov", "ova", "ev", "eva", "in", "ina", "sky", "skiy", "skii", "skaya", "enko", "yan", "uk",
    ];
    folded.len() >= 5 && ENDINGS.iter().any(|e| folded.ends_with(e))
}

/// Common words that end like surnames. They are capitalised at sentence starts and in
/// signatures, so they must not count as surnames on their own.
const COMMON_WORDS: &[&str] = &[
    "машина",
    "машину",
    "машине",
    "машиной",
    "причина",
    "причину",
    "мужчина",
    "мужчину",
    "малина",
    "картина",
    "глубина",
    "половина",
    "середина",
    "витрина",
    "спина",
    "спину",
    "спине",
    "вина",
    "резина",
    "резину",
    "шина",
    "шину",
    "шины",
    "пружина",
    "ангина",
    "вакцина",
    "медицина",
    "калина",
    "рябина",
    "долина",
    "вершина",
    "кабина",
    "ветчина",
    "свинина",
    "говядина",
    "тишина",
    "ширина",
    "длина",
    "величина",
    "морщина",
    "морщины",
    "именины",
    "годовщина",
    "слова",
    "снова",
    "основа",
    "готова",
    "здорова",
    "корова",
    "голова",
    "голову",
    "сова",
    "вдова",
    "готов",
    "здоров",
    "основе",
    "слове",
    "магазин",
    "бензин",
    "витамин",
    "карантин",
    "блин",
    "один",
    "кофеин",
    "никотин",
    "жасмин",
    "мандарин",
    "апельсин",
    "камин",
    "кувшин",
    "керосин",
    "господин",
    "гражданин",
    "христиан",
    "грузин",
    "семьянин",
    "маркетинг",
    "хороших",
    "новых",
    "других",
    "всех",
    "своих",
    "моих",
    "ваших",
    "наших",
    "их",
    "этих",
    "тех",
    "таких",
    "каких",
    "одних",
    "многих",
    "платных",
    "бесплатных",
    "лучших",
    "спасибо",
    "утром",
    "вечером",
    "днем",
    "вторник",
    "сипайлово",
    "утра",
    "вечера",
    "вида",
    "нова",
    "района",
    "районе",
    "район",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declension_rules() {
        assert!(decline("марина", None, false).contains(&"марине".to_string()));
        assert!(decline("наташа", None, false).contains(&"наташей".to_string()));
        assert!(decline("лилия", None, false).contains(&"лилии".to_string()));
        assert!(decline("андрей", None, true).contains(&"андрею".to_string()));
        assert!(decline("дмитрий", None, true).contains(&"дмитрия".to_string()));
        assert!(decline("павел", Some("павл"), true).contains(&"павла".to_string()));
        assert!(decline("любовь", Some("любов"), false).contains(&"любови".to_string()));
        assert!(decline("айдар", None, true).contains(&"айдару".to_string()));
    }

    #[test]
    fn dictionary_has_cases_and_latin() {
        let names = &*NAMES;
        assert!(names.get("лиле").is_some_and(|n| !n.nominative));
        assert!(names.get("семен").is_some_and(|n| n.nominative));
        assert!(names.get("роза").is_some_and(|n| n.ambiguous));
        assert!(names.contains_key("dilyara"));
        assert!(names.contains_key("olga"));
        assert!(names.contains_key("vladimir"));
        assert!(names.contains_key("emily"));
    }

    #[test]
    fn suffix_rules() {
        assert!(is_patronymic("викторовна"));
        assert!(is_patronymic("маратовичу"));
        assert!(is_patronymic("ильинична"));
        assert!(!is_patronymic("условна"));
        assert!(is_surname_like("абдурахмановой"));
        assert!(is_surname_like("королева"));
        assert!(!is_surname_like("машина"));
    }
}
