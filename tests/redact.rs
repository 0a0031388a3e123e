//! Integration tests for the redaction module through its public API.

use leadgate::redact::{self, PiiKind, Redaction, redact, restore, restore_draft};
use proptest::prelude::*;

/// Returns (kind, original text) for every span.
fn spans(result: &Redaction, text: &str) -> Vec<(PiiKind, String)> {
    result
        .spans
        .iter()
        .map(|s| (s.kind, text[s.start..s.end].to_string()))
        .collect()
}

fn kinds_of(text: &str, kind: PiiKind) -> Vec<String> {
    let result = redact(text);
    spans(&result, text)
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, s)| s)
        .collect()
}

#[test]
fn phone_next_to_price() {
    let text = "стрижка 1500 руб, тел 89174821639";
    let result = redact(text);
    assert_eq!(
        spans(&result, text),
        vec![(PiiKind::Phone, "89174821639".into())]
    );
    assert_eq!(result.text, "стрижка 1500 руб, тел [PHONE_1]");
    assert_eq!(result.spans[0].normalized.as_deref(), Some("+79174821639"));
}

#[test]
fn phones_with_lookalike_separators() {
    let cases = [
        ("тел. +7 917 555\u{2011}44\u{2011}22", "+79175554422"),
        ("тел. +7\u{202F}917\u{202F}555 44 22", "+79175554422"),
        (
            "тел. \u{FF0B}\u{FF17} 917 555\u{2013}44\u{2013}22",
            "+79175554422",
        ),
        ("тел. 8 917 555\u{200B}44 22", "+79175554422"),
    ];
    for (text, e164) in cases {
        let result = redact(text);
        assert_eq!(result.text, "тел. [PHONE_1]", "{text:?}");
        assert_eq!(result.spans.len(), 1, "{text:?}");
        assert_eq!(
            result.spans[0].normalized.as_deref(),
            Some(e164),
            "{text:?}"
        );
    }
}

#[test]
fn health_term_after_em_dash() {
    let text = "Здравствуйте \u{2014} у меня аллергия";
    let result = redact(text);
    assert_eq!(result.health_terms.len(), 1);
    let term = &result.health_terms[0];
    assert_eq!(&text[term.start..term.end], "аллергия");
}

#[test]
fn date_time_is_not_phone() {
    let text = "запишите на 16.03.2024 в 12:30, пожалуйста";
    assert!(redact(text).spans.is_empty());
}

#[test]
fn order_number_and_uuid_are_left() {
    assert!(redact("заказ № 4829103 оплачен").spans.is_empty());
    assert!(
        redact("id 550e8400-e29b-41d4-a716-446655440000")
            .spans
            .is_empty()
    );
    assert!(redact("заказ-наряд №004817").spans.is_empty());
}

#[test]
fn company_inn_left_personal_inn_redacted() {
    assert!(redact("ИНН ООО Ромашка 7707083893").spans.is_empty());
    assert_eq!(
        kinds_of("мой ИНН 500100732259", PiiKind::Inn),
        vec!["500100732259"]
    );
}

#[test]
fn luhn_failing_reference_is_left_but_card_after_word_is_redacted() {
    assert!(
        redact("платёжное поручение 5536 9150 9819 5733 от вчера")
            .spans
            .is_empty()
    );
    assert_eq!(
        kinds_of("верните на карту 5536 9150 9819 5733", PiiKind::Card),
        vec!["5536 9150 9819 5733"]
    );
    assert_eq!(
        kinds_of("оплата картой 2202 2029 1982 1599", PiiKind::Card),
        vec!["2202 2029 1982 1599"]
    );
}

#[test]
fn snils_valid_and_after_document_word() {
    assert_eq!(
        kinds_of("СНИЛС 86411725203", PiiKind::Snils),
        vec!["86411725203"]
    );
    assert_eq!(
        kinds_of("СНИЛС: 668-782-730 10", PiiKind::Snils),
        vec!["668-782-730 10"]
    );
}

#[test]
fn passport_and_oms() {
    assert_eq!(
        kinds_of("паспорт 45 12 345678, выдан", PiiKind::Passport),
        vec!["45 12 345678"]
    );
    assert_eq!(
        kinds_of("полис ОМС 0214923461527761", PiiKind::Oms),
        vec!["0214923461527761"]
    );
}

#[test]
fn genitive_full_name() {
    assert_eq!(
        kinds_of(
            "запишите Абдурахмановой Натальи Петровны на среду",
            PiiKind::Person
        ),
        vec!["Абдурахмановой Натальи Петровны"]
    );
}

#[test]
fn initials_after_and_before_surname() {
    assert_eq!(
        kinds_of("Пациент Иванов И.И. записан", PiiKind::Person),
        vec!["Иванов И.И."]
    );
    assert_eq!(
        kinds_of("Принимает И.И. Иванов", PiiKind::Person),
        vec!["И.И. Иванов"]
    );
}

#[test]
fn all_caps_name() {
    assert_eq!(
        kinds_of("ЗАПИСЬ НА ЗАВТРА ИВАНОВА МАРИЯ", PiiKind::Person),
        vec!["ИВАНОВА МАРИЯ"]
    );
}

#[test]
fn yo_and_ye_spellings() {
    assert_eq!(kinds_of("Это Семён", PiiKind::Person), vec!["Семён"]);
    assert_eq!(kinds_of("Это Семен", PiiKind::Person), vec!["Семен"]);
    assert_eq!(
        kinds_of("запись к Анне Королёвой", PiiKind::Person),
        vec!["Анне Королёвой"]
    );
    assert_eq!(
        kinds_of("запись к Анне Королевой", PiiKind::Person),
        vec!["Анне Королевой"]
    );
}

#[test]
fn emoji_glued_to_names() {
    assert_eq!(
        kinds_of("можно к Лиле🙏 в субботу", PiiKind::Person),
        vec!["Лиле"]
    );
    assert_eq!(kinds_of("💅Маша, привет", PiiKind::Person), vec!["Маша"]);
}

#[test]
fn common_noun_names_need_context() {
    assert!(redact("Роза ветров и вера в лучшее").spans.is_empty());
    assert_eq!(
        kinds_of("меня зовут Вера, запишите", PiiKind::Person),
        vec!["Вера"]
    );
}

#[test]
fn lone_surname_at_text_start() {
    // A capitalised surname as the first word once sliced out of bounds.
    assert!(redact("Кузнецов").spans.is_empty());
    assert_eq!(
        kinds_of("записалась к Зульфие Рашитовне", PiiKind::Person),
        vec!["Зульфие Рашитовне"]
    );
}

#[test]
fn cyrillic_email() {
    let text = "пишите на иван@почта.рф";
    let result = redact(text);
    assert_eq!(
        spans(&result, text),
        vec![(PiiKind::Email, "иван@почта.рф".into())]
    );
    assert_eq!(result.text, "пишите на [EMAIL_1]");
}

#[test]
fn phone_in_words() {
    let text =
        "номер восемь девятьсот семнадцать четыреста восемьдесят два шестнадцать тридцать девять";
    let result = redact(text);
    assert_eq!(result.spans.len(), 1);
    assert_eq!(result.spans[0].kind, PiiKind::Phone);
    assert_eq!(result.spans[0].normalized.as_deref(), Some("+79174821639"));
    assert_eq!(result.text, "номер [PHONE_1]");
}

#[test]
fn same_value_same_placeholder() {
    let text = "тел +7 917 482-16-39, или 89174821639, или 8 927 301 55 84";
    let result = redact(text);
    let placeholders: Vec<&str> = result
        .spans
        .iter()
        .map(|s| s.placeholder.as_str())
        .collect();
    assert_eq!(placeholders, vec!["[PHONE_1]", "[PHONE_1]", "[PHONE_2]"]);
    assert_eq!(result.mapping.len(), 2);
    assert_eq!(result.restore(&result.text), text);
}

#[test]
fn plates_and_handles() {
    assert_eq!(
        kinds_of("машина А482КМ 102 и а123вс777", PiiKind::CarPlate),
        vec!["А482КМ 102", "а123вс777"]
    );
    assert_eq!(
        kinds_of("пишите @alina_ufa_02 или a.b@mail.ru", PiiKind::Handle),
        vec!["@alina_ufa_02"]
    );
}

#[test]
fn birthdate_only_with_marker() {
    assert_eq!(
        kinds_of("Анна, 12.03.1956 г.р., запись на 16.03", PiiKind::Birthdate),
        vec!["12.03.1956"]
    );
}

#[test]
fn address_with_flat() {
    assert_eq!(
        kinds_of(
            "адрес: г. Уфа, ул. Цюрупы, д. 42, кв. 15. Жду",
            PiiKind::Address
        ),
        vec!["г. Уфа, ул. Цюрупы, д. 42, кв. 15"]
    );
}

#[test]
fn health_flagged_not_redacted() {
    let result = redact("у меня болит зуб и аллергия на лидокаин");
    assert!(result.special_category);
    let categories: Vec<&str> = result.health_terms.iter().map(|h| h.category).collect();
    assert_eq!(categories, vec!["symptom", "allergy"]);
    assert_eq!(result.text, "у меня болит зуб и аллергия на лидокаин");
    assert!(!redact("хочу маникюр и стрижку").special_category);
}

#[test]
fn restore_draft_drops_unknown_and_mangled() {
    let result = redact("Меня зовут Гульнара, телефон +7 917 482-16-39");
    let draft = "Гульнара, мы позвоним на [PHONE_1]. [PHONE_9] [PHONE 1] [PERSON-1] [ PHONE_1 ] До встречи, [PERSON_1]!";
    let restored = restore_draft(&result.mapping, draft);
    assert_eq!(
        restored,
        "Гульнара, мы позвоним на +7 917 482-16-39. До встречи, Гульнара!"
    );
}

#[test]
fn preexisting_placeholder_text_round_trips() {
    let text = "[PHONE_1] уже занят, мой тел 89174821639";
    let result = redact(text);
    assert_eq!(result.spans[0].placeholder, "[PHONE_2]");
    assert_eq!(restore(&result.mapping, &result.text), text);
}

#[test]
fn serde_names_are_screaming_snake_case() {
    assert_eq!(
        serde_json::to_string(&PiiKind::CarPlate).unwrap(),
        "\"CAR_PLATE\""
    );
    assert_eq!(PiiKind::CarPlate.as_str(), "CAR_PLATE");
    let result = redact("машина А482КМ 102");
    assert_eq!(result.spans[0].placeholder, "[CAR_PLATE_1]");
    let json = serde_json::to_string(&result.mapping).unwrap();
    let back: redact::Mapping = serde_json::from_str(&json).unwrap();
    assert_eq!(back, result.mapping);
}

#[test]
fn evaluate_counts_found_and_false_positive() {
    let jsonl = concat!(
        r#"{"id":"A","text":"тел 89174821639, Ольга","pii":[{"type":"PHONE","text":"89174821639"},{"type":"PERSON","text":"Ольга"}],"special_category":false}"#,
        "\n",
        r#"{"id":"B","text":"болит зуб, к Марине","pii":[],"special_category":true}"#,
        "\n",
    );
    let report = redact::evaluate(jsonl);
    assert_eq!(report.messages, 2);
    assert_eq!(report.tp, 2);
    assert_eq!(report.fp, 1);
    assert_eq!(report.fn_, 0);
    assert_eq!(report.health_agreement, 1.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn restore_round_trips_any_string(text in any::<String>()) {
        let result = redact(&text);
        prop_assert_eq!(result.restore(&result.text), text);
    }

    #[test]
    fn restore_round_trips_placeholder_like_text(
        parts in prop::collection::vec(
            prop_oneof![
                Just("[PHONE_1]".to_string()),
                Just("[PERSON_2]".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just(" тел 89174821639 ".to_string()),
                Just("Ольга ".to_string()),
                Just("[PHONE_".to_string()),
                Just("иван@почта.рф".to_string()),
                "[\\PC]{0,8}",
            ],
            0..12,
        )
    ) {
        let text: String = parts.concat();
        let result = redact(&text);
        prop_assert_eq!(restore(&result.mapping, &result.text), text);
    }

    #[test]
    fn never_panics_and_spans_are_sound(text in "\\PC{0,200}") {
        let result = redact(&text);
        let mut previous_end = 0;
        for span in &result.spans {
            prop_assert!(span.start < span.end);
            prop_assert!(span.start >= previous_end);
            prop_assert!(text.is_char_boundary(span.start));
            prop_assert!(text.is_char_boundary(span.end));
            previous_end = span.end;
        }
        let _ = restore_draft(&result.mapping, &text);
    }

    #[test]
    fn never_panics_on_name_like_words(
        words in prop::collection::vec(
            prop_oneof![
                Just("Кузнецов"), Just("И."), Just("Ф.И.О."), Just("Роза"), Just("к"),
                Just("Викторовна"), Just("ИВАНОВА"), Just("Ivan"), Just("Petrov"), Just(","),
                Just("\n"), Just("🙏"), Just("8 917 482-16-39"), Just("ул."), Just("д."),
                Just("42"), Just("СНИЛС"), Just("на"), Just("бакалинской"), Just("двадцать"),
                Just("ем"), Just("сто"), Just("ка"), Just("ха"), Just("г.р."),
            ],
            0..16,
        ),
        separators in prop::collection::vec(prop_oneof![Just(" "), Just(""), Just(". ")], 16),
    ) {
        let text: String = words
            .iter()
            .zip(&separators)
            .flat_map(|(w, s)| [*w, *s])
            .collect();
        let result = redact(&text);
        prop_assert_eq!(result.restore(&result.text), text);
    }

    #[test]
    fn never_panics_on_digit_soup(text in "[0-9 +()\\-.тел№@a-zа-я]{0,120}") {
        let result = redact(&text);
        prop_assert_eq!(result.restore(&result.text), text);
    }
}

/// The targets on the labelled development corpus: recall of numbers and emails, of names,
/// overall precision and the health flag.
#[test]
fn corpus_meets_targets() {
    let path = std::env::var_os("LEADGATE_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/corpus/leads-dev.jsonl")
        });
    let input = std::fs::read_to_string(&path).expect("the labelled corpus");
    let report = redact::evaluate(&input);
    assert_eq!(report.messages, 100);
    assert_eq!(report.skipped_lines, 0);
    for kind in ["PHONE", "EMAIL", "CARD", "SNILS", "INN"] {
        let score = &report.per_type[kind];
        assert!(score.recall >= 0.99, "{kind} recall {}", score.recall);
    }
    let person = &report.per_type["PERSON"];
    assert!(person.recall >= 0.95, "PERSON recall {}", person.recall);
    assert!(report.precision >= 0.95, "precision {}", report.precision);
    assert!(
        report.health_agreement >= 0.90,
        "health {}",
        report.health_agreement
    );
}
