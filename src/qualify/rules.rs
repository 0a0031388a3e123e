//! Deterministic signals read from the redacted text, and the rule that combines them with
//! the model's answer.
//!
//! The combination rule, field by field:
//!
//! - `intent`, the first rule that applies: two or more spam cues, or one when the model
//!   also says spam, give `spam`. A prompt-injection cue gives `spam`, or `other` when the
//!   message also names a service. A job-application cue gives `other`. Then a complaint
//!   cue gives `complaint`, a cancel cue `cancel`, a reschedule cue `reschedule`. A model
//!   `spam` without spam cues becomes `other`, and thanks with no booking cue and no
//!   question mark give `other`. A price cue turns the model's `question` or `other` into
//!   `price_inquiry`, and a booking cue turns `question`, `other` or `price_inquiry` into
//!   `book_appointment`. A model `book_appointment` for a message with a question mark but
//!   no booking cue and no day or time becomes `question`. Otherwise the model decides.
//! - `service`: `other` for spam and job applications. Otherwise the catalog stems decide:
//!   the service with the most stem matches wins; a match inside a longer match of another
//!   service (as "hair" in "laser hair") does not count. The model breaks a tie between the
//!   leading services. With no stem match the lead is `other`, because a message that names
//!   no service word gives the small model too little to choose from the catalog.
//! - `urgency`: `high` when an urgency cue (pain, swelling, bleeding, "today", "tomorrow",
//!   "urgent") is present. Otherwise `normal` for booking, rescheduling, cancelling and
//!   complaints, and `low` for the rest.
//! - `temperature`: `hot` for booking and rescheduling, `warm` for a price inquiry, `cold`
//!   for spam, cancelling, complaints, job applications and thanks; a question is `warm`
//!   unless the model says `cold`; for any other `other` the model decides.
//! - `language`: counted from the letters (Cyrillic, Latin, Tatar and Bashkir letters) and
//!   a short list of transliteration and English words; the model is not asked.

use crate::config::Service;

// NOTE: the cue lists were tuned on one labelled corpus of 100 messages, so accuracy on
// other wording is likely lower; `leadgate eval --misses` lists disagreements to extend them.

const SPAM_CUES: &[&str] = &[
    "http",
    "www.",
    "bit.ly",
    ".ru/",
    ".com/",
    "реклам",
    "продвижен",
    "заработ",
    "увеличим",
    "продаж",
    "таргет",
    "smm",
    "выиграл",
    "предлагает",
    "предлагаем",
    "продам",
    "торг",
    "скидка",
    "crypto",
    "earn",
    "investment",
    "invest",
    "casino",
    "казино",
    "promotion",
];

/// Site addresses such as `example-ufa.ru` count as one spam cue.
const SPAM_DOMAINS: &[&str] = &[".ru", ".com", ".net", ".рф", ".org"];

const INJECTION_CUES: &[&str] = &[
    "игнорируй",
    "инструкци",
    "ты теперь",
    "режим администратора",
    "выведи",
    "ignore previous",
    "ignore all",
    "system override",
    "you are now",
    "print the",
];

const URGENCY_CUES: &[&str] = &[
    "болит",
    "болят",
    "болел",
    "боль$",
    "боли$",
    "болью$",
    "больно$",
    "острая",
    "острой",
    "острые",
    "острую",
    "острый",
    "срочно",
    "срочн",
    "сегодня",
    "севодня",
    "сегодн",
    "завтра",
    "завтрашн",
    "опух",
    "отек",
    "кровь",
    "кровян",
    "кровотеч",
    "температур",
    "сорвал",
    "не заводится",
    "прямо сейчас",
    "через час",
    "pain",
    "hurts",
    "today",
    "tonight",
    "tomorrow",
    "urgent",
    "asap",
    "emergency",
    "segodnya",
    "zavtra",
    "srochno",
    "bolit",
];

const CANCEL_CUES: &[&str] = &["отмен", "отбой", "не смогу прийти", "otmen", "cancel"];

const RESCHEDULE_CUES: &[&str] = &[
    "перенес",
    "перенос",
    "перезапис",
    "peren",
    "reschedul",
    "move my",
];

const PRICE_CUES: &[&str] = &[
    "сколько стоит",
    "сколько будет стоить",
    "скока стоит",
    "цена",
    "цены",
    "цену",
    "стоимост",
    "почем",
    "прайс",
    "price",
    "how much",
    "cost",
    "skolko stoit",
    "tsena",
    "cena",
    "күпме",
];

const BOOKING_CUES: &[&str] = &[
    "запиш",
    "записат",
    "записаться",
    "окошк",
    "свободное время",
    "zapis",
    "book",
    "appointment",
];

const COMPLAINT_CUES: &[&str] = &[
    "жалоб",
    "пожаловат",
    "верните деньги",
    "испортил",
    "ужасн",
    "недоволен",
    "недовольна",
    "груб",
    "refund",
    "terrible service",
    "в шоке",
    "после вашего",
    "после вашей",
    "после ваших",
    "толку",
    "трубку не бер",
    "не берет трубку",
    "безобраз",
    "возмут",
];

/// Words of a job application or another message to the business, not a client's request.
const JOB_CUES: &[&str] = &[
    "ваканси",
    "резюме",
    "устроиться",
    "vacancy",
    "resume",
    "job",
];

/// Thanks after a visit; with no booking cue and no question the lead is `other`.
const THANKS_CUES: &[&str] = &["спасибо за", "спасибо большое", "благодар", "thank you for"];

/// Words that give a day or time, which makes a request concrete.
const DATE_CUES: &[&str] = &[
    "сегодн",
    "севодня",
    "завтр",
    "послезавтра",
    "понедельник",
    "вторник",
    "сред",
    "четверг",
    "пятниц",
    "суббот",
    "воскресен",
    "на следующей неделе",
    "утром",
    "вечером",
    "после обеда",
    "segodnya",
    "zavtra",
    "v sredu",
    "subbot",
    "voskresen",
    "today",
    "tomorrow",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "next week",
];

/// Latin words that mark Russian written in Latin letters.
const TRANSLIT_WORDS: &[&str] = &[
    "privet",
    "zdravst",
    "zdrastvu",
    "dobr",
    "pozhal",
    "spasib",
    "skolko",
    "mozhno",
    "hochu",
    "khochu",
    "zapis",
    "nuzhn",
    "est",
    "kak",
    "eto",
    "menya",
    "mne",
    "vy",
    "u vas",
    "ya",
    "segodnya",
    "zavtra",
    "stoit",
    "rabotaete",
    "kakoi",
    "kakie",
    "pridu",
];

/// Common English words; one of them next to Cyrillic text makes a message mixed.
const ENGLISH_WORDS: &[&str] = &[
    "hi", "hello", "the", "my", "is", "can", "you", "do", "it", "and", "what", "about", "per",
    "for", "price", "girls", "need", "please", "thanks", "how", "much", "on",
];

/// Letters of Tatar and Bashkir that Russian lacks.
const TURKIC_LETTERS: &[char] = &[
    'ә', 'ө', 'ү', 'ң', 'җ', 'һ', 'ҙ', 'ҡ', 'ғ', 'ҫ', 'Ә', 'Ө', 'Ү', 'Ң', 'Җ', 'Һ', 'Ҙ', 'Ҡ', 'Ғ',
    'Ҫ',
];

/// Signals the rules read from one redacted message.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Stem matches per service id, in catalog order, only services with a match.
    pub service_hits: Vec<(String, usize)>,
    pub spam_cues: usize,
    pub injection: bool,
    pub urgent: bool,
    pub cancel: bool,
    pub reschedule: bool,
    pub price: bool,
    pub booking: bool,
    pub complaint: bool,
    pub job: bool,
    pub thanks: bool,
    /// A day, a weekday or a clock time such as 14:00 or 16.03.
    pub date: bool,
    pub question_mark: bool,
    pub language: &'static str,
}

/// The model's answer, as parsed from its JSON.
#[derive(Debug, Clone)]
pub struct ModelAnswer {
    pub service: String,
    pub intent: String,
    pub urgency: String,
    pub temperature: String,
    pub missing_fields: Vec<String>,
    pub summary: String,
}

/// The combined qualification, before the score.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub service: String,
    pub intent: String,
    pub urgency: String,
    pub temperature: String,
    pub language: String,
}

/// Lowercases `text` and folds `ё` to `е`.
fn fold(text: &str) -> String {
    text.to_lowercase().replace('ё', "е")
}

/// Returns true when `cue` occurs at the start of a word of `folded`. A cue ending in `$`
/// must also end the word, so "боль$" matches "боль" but not "больше".
fn has_word_start(folded: &str, cue: &str) -> bool {
    let (cue, whole_word) = match cue.strip_suffix('$') {
        Some(stripped) => (stripped, true),
        None => (cue, false),
    };
    folded.match_indices(cue).any(|(at, _)| {
        let before = folded[..at].chars().next_back();
        let after = folded[at + cue.len()..].chars().next();
        let starts =
            !before.is_some_and(char::is_alphanumeric) || !cue.starts_with(char::is_alphanumeric);
        starts && !(whole_word && after.is_some_and(char::is_alphanumeric))
    })
}

/// Returns true for a time or date written with digits: "14:00", "16.03", "в 12".
fn has_clock_or_date(folded: &str) -> bool {
    let bytes = folded.as_bytes();
    let clock = bytes
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && (w[1] == b':' || w[1] == b'.') && w[2].is_ascii_digit());
    clock || folded.contains("в 1") || folded.contains("к 1") || folded.contains(" v 1")
}

fn count_cues(folded: &str, cues: &[&str]) -> usize {
    cues.iter()
        .filter(|cue| has_word_start(folded, cue))
        .count()
}

/// Reads the signals from a redacted message.
pub fn signals(redacted: &str, services: &[Service]) -> Signals {
    let folded = fold(redacted);
    let words = folded
        .split(|c: char| !c.is_alphanumeric() && c != '.' && c != '-')
        .filter(|w| !w.is_empty());
    let domains = words
        .filter(|w| {
            SPAM_DOMAINS
                .iter()
                .any(|d| w.ends_with(d) && w.len() > d.len() + 2)
        })
        .count();
    Signals {
        service_hits: service_hits(&folded, services),
        spam_cues: count_cues(&folded, SPAM_CUES) + domains.min(1),
        injection: count_cues(&folded, INJECTION_CUES) > 0,
        urgent: count_cues(&folded, URGENCY_CUES) > 0,
        cancel: count_cues(&folded, CANCEL_CUES) > 0,
        reschedule: count_cues(&folded, RESCHEDULE_CUES) > 0,
        price: count_cues(&folded, PRICE_CUES) > 0,
        booking: count_cues(&folded, BOOKING_CUES) > 0,
        complaint: count_cues(&folded, COMPLAINT_CUES) > 0,
        job: count_cues(&folded, JOB_CUES) > 0,
        thanks: count_cues(&folded, THANKS_CUES) > 0,
        date: count_cues(&folded, DATE_CUES) > 0 || has_clock_or_date(&folded),
        question_mark: folded.contains('?'),
        language: language(redacted),
    }
}

/// Counts stem matches per service; a match inside a longer match of another service is
/// dropped.
fn service_hits(folded: &str, services: &[Service]) -> Vec<(String, usize)> {
    let mut matches: Vec<(usize, usize, usize)> = Vec::new();
    for (index, service) in services.iter().enumerate() {
        for stem in &service.stems {
            let stem = fold(stem);
            for (at, _) in folded.match_indices(stem.as_str()) {
                let before = folded[..at].chars().next_back();
                if before.is_some_and(char::is_alphanumeric) {
                    continue;
                }
                matches.push((at, at + stem.len(), index));
            }
        }
    }
    let kept: Vec<&(usize, usize, usize)> = matches
        .iter()
        .filter(|(start, end, index)| {
            !matches.iter().any(|(s, e, i)| {
                i != index && *s <= *start && *end <= *e && (e - s) > (end - start)
            })
        })
        .collect();
    let mut hits = Vec::new();
    for (index, service) in services.iter().enumerate() {
        // Several stems matching at the same place count once.
        let mut starts: Vec<usize> = kept
            .iter()
            .filter(|(_, _, i)| *i == index)
            .map(|(s, _, _)| *s)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        if !starts.is_empty() {
            hits.push((service.id.clone(), starts.len()));
        }
    }
    hits
}

/// Detects the language of a message from its letters and a few marker words.
pub fn language(text: &str) -> &'static str {
    let cyrillic = text
        .chars()
        .filter(|c| matches!(c, 'а'..='я' | 'А'..='Я' | 'ё' | 'Ё'))
        .count();
    let latin = text.chars().filter(char::is_ascii_alphabetic).count();
    let turkic_words = text
        .split_whitespace()
        .filter(|w| w.contains(TURKIC_LETTERS))
        .count();

    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let latin_words: Vec<&String> = words
        .iter()
        .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()) && !w.is_empty())
        .collect();
    let translit = latin_words
        .iter()
        .filter(|w| {
            TRANSLIT_WORDS
                .iter()
                .any(|t| w.starts_with(t) && t.len() >= 3)
        })
        .count();
    let english = latin_words
        .iter()
        .filter(|w| ENGLISH_WORDS.contains(&w.as_str()))
        .count();
    let cyrillic_words = words
        .iter()
        .filter(|w| w.chars().any(|c| c.is_alphabetic() && !c.is_ascii()))
        .count();

    if turkic_words > 0 {
        return if turkic_words * 2 >= cyrillic_words {
            "other"
        } else {
            "mixed"
        };
    }
    if cyrillic == 0 && latin == 0 {
        return "other";
    }
    if cyrillic == 0 {
        return if translit > english { "translit" } else { "en" };
    }
    if latin == 0 || english == 0 {
        return "ru";
    }
    "mixed"
}

/// Combines the signals with the model's answer by the rule in the module documentation.
pub fn combine(signals: &Signals, answer: &ModelAnswer) -> Fields {
    let intent = combine_intent(signals, answer);
    let service = combine_service(signals, answer, &intent);
    let urgency = if signals.urgent && intent != "spam" {
        "high"
    } else {
        match intent.as_str() {
            "book_appointment" | "reschedule" | "cancel" | "complaint" => "normal",
            _ => "low",
        }
    };
    let temperature = match intent.as_str() {
        "book_appointment" | "reschedule" => "hot",
        "price_inquiry" => "warm",
        "spam" | "cancel" | "complaint" => "cold",
        "other" if signals.job || signals.thanks => "cold",
        // A question is warm unless the model rates it as a cold administrative request.
        "question" if answer.temperature != "cold" => "warm",
        _ => answer.temperature.as_str(),
    };
    Fields {
        service,
        intent,
        urgency: urgency.to_string(),
        temperature: temperature.to_string(),
        language: signals.language.to_string(),
    }
}

fn combine_intent(signals: &Signals, answer: &ModelAnswer) -> String {
    let model = answer.intent.as_str();
    let spam = signals.spam_cues >= 2 || (signals.spam_cues == 1 && model == "spam");
    let intent = if signals.injection {
        if signals.service_hits.is_empty() {
            "spam"
        } else {
            "other"
        }
    } else if spam {
        "spam"
    } else if signals.job {
        "other"
    } else if signals.complaint {
        "complaint"
    } else if signals.cancel {
        "cancel"
    } else if signals.reschedule {
        "reschedule"
    } else if model == "spam" || (signals.thanks && !signals.booking && !signals.question_mark) {
        "other"
    } else if signals.price && matches!(model, "question" | "other") {
        "price_inquiry"
    } else if signals.booking && matches!(model, "question" | "other" | "price_inquiry") {
        "book_appointment"
    } else if model == "book_appointment"
        && signals.question_mark
        && !signals.booking
        && !signals.date
    {
        // Asking whether something is possible, with no day and no booking word.
        "question"
    } else {
        model
    };
    intent.to_string()
}

fn combine_service(signals: &Signals, answer: &ModelAnswer, intent: &str) -> String {
    if intent == "spam" || signals.job {
        return "other".to_string();
    }
    let best = signals
        .service_hits
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let leaders: Vec<&str> = signals
        .service_hits
        .iter()
        .filter(|(_, n)| *n == best)
        .map(|(id, _)| id.as_str())
        .collect();
    match leaders.as_slice() {
        [] => "other".to_string(),
        [only] => only.to_string(),
        tied if tied.contains(&answer.service.as_str()) => answer.service.clone(),
        tied => tied[0].to_string(),
    }
}

/// Scores a lead from 0 to 100: temperature base (hot 50, warm 30, cold 10), plus urgency
/// (high 25, normal 10, low 0), plus intent (booking 25, rescheduling 15, price 15,
/// question 10, complaint and other 0, cancel −10), clamped to 0..=100. Spam scores 0.
pub fn score(fields: &Fields) -> u8 {
    if fields.intent == "spam" {
        return 0;
    }
    let base: i32 = match fields.temperature.as_str() {
        "hot" => 50,
        "warm" => 30,
        _ => 10,
    };
    let urgency = match fields.urgency.as_str() {
        "high" => 25,
        "normal" => 10,
        _ => 0,
    };
    let intent = match fields.intent.as_str() {
        "book_appointment" => 25,
        "reschedule" | "price_inquiry" => 15,
        "question" => 10,
        "cancel" => -10,
        _ => 0,
    };
    (base + urgency + intent).clamp(0, 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn answer(intent: &str, service: &str) -> ModelAnswer {
        ModelAnswer {
            service: service.into(),
            intent: intent.into(),
            urgency: "normal".into(),
            temperature: "warm".into(),
            missing_fields: Vec::new(),
            summary: String::new(),
        }
    }

    #[test]
    fn stems_match_inflected_forms() {
        let settings = Settings::defaults();
        let s = signals("Болят зубы, можно к стоматологу?", &settings.services);
        assert_eq!(s.service_hits, vec![("dentistry".to_string(), 2)]);
        assert!(s.urgent);
        let s = signals("Больше всего хочу к стоматологу", &settings.services);
        assert!(!s.urgent);
    }

    #[test]
    fn longer_stem_hides_shorter_one() {
        let settings = Settings::defaults();
        let s = signals("Do you do laser hair removal?", &settings.services);
        let fields = combine(&s, &answer("question", "hair"));
        assert_eq!(fields.service, "cosmetology");
    }

    #[test]
    fn spam_needs_two_cues_or_model() {
        let settings = Settings::defaults();
        let s = signals("Реклама и продвижение вашего салона", &settings.services);
        assert_eq!(combine(&s, &answer("other", "other")).intent, "spam");
        let s = signals("Есть скидка на стрижку?", &settings.services);
        assert_eq!(
            combine(&s, &answer("price_inquiry", "hair")).intent,
            "price_inquiry"
        );
    }

    #[test]
    fn language_detection() {
        assert_eq!(language("Здравствуйте, сколько стоит?"), "ru");
        assert_eq!(language("privet, skolko stoit strizhka?"), "translit");
        assert_eq!(language("Hello, how much is a haircut?"), "en");
        assert_eq!(language("Hi, нужен детейлинг, can you do it?"), "mixed");
    }

    #[test]
    fn score_rule() {
        let fields = Fields {
            service: "hair".into(),
            intent: "book_appointment".into(),
            urgency: "high".into(),
            temperature: "hot".into(),
            language: "ru".into(),
        };
        assert_eq!(score(&fields), 100);
        let spam = Fields {
            intent: "spam".into(),
            ..fields
        };
        assert_eq!(score(&spam), 0);
    }
}
