//! The HTML of forex-web's one page: a form and a result or error box.
//!
//! Plain server-rendered HTML with inline CSS: no scripts, no external assets.
//! Every dynamic value goes through [`escape`].

use std::fmt::Write;

/// The values shown in the form (as typed, so a mistake can be corrected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormValues {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The amount as typed.
    pub amount: String,
    /// Source currency code.
    pub from: String,
    /// Target currency code.
    pub to: String,
}

/// A successful conversion, as display strings from the converter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    /// e.g. `100.00 USD`.
    pub amount: String,
    /// e.g. `10,330 JPY`.
    pub converted: String,
    /// The requested date.
    pub date: String,
    /// The ECB business day the rate is from.
    pub effective_date: String,
    /// The cross rate.
    pub rate: String,
}

/// What to show under the form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The conversion worked.
    Converted(Conversion),
    /// Something went wrong; the message is safe to show to anyone.
    Failed {
        /// One friendly sentence.
        message: String,
        /// The form field at fault, to highlight it.
        field: Option<String>,
    },
}

/// Everything the page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The form's current values.
    pub form: FormValues,
    /// Currency codes for the two `<select>`s.
    pub currencies: Vec<String>,
    /// The result or error, after a submission.
    pub outcome: Option<Outcome>,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#eef1f5;color:#1d2433}\
main{max-width:34rem;margin:3rem auto;padding:0 1rem}\
.card{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(20,30,60,.08);padding:1.75rem}\
h1{font-size:1.35rem;margin:0 0 .25rem}\
p.sub{margin:0 0 1.25rem;color:#5b6475;font-size:.9rem}\
form{display:grid;grid-template-columns:1fr 1fr;gap:.9rem 1rem}\
label{display:flex;flex-direction:column;font-size:.8rem;font-weight:600;color:#5b6475;text-transform:uppercase;letter-spacing:.03em}\
input,select{margin-top:.3rem;font:inherit;padding:.5rem .6rem;border:1px solid #c9d0db;border-radius:8px;background:#fff;color:inherit}\
label.bad input,label.bad select{border-color:#c62828;background:#fff6f6}\
button{grid-column:1/-1;font:inherit;font-weight:600;padding:.65rem;border:0;border-radius:8px;background:#1f5fbf;color:#fff;cursor:pointer}\
button:hover{background:#184c99}\
.result,.error{margin-top:1.25rem;padding:1rem 1.1rem;border-radius:8px}\
.result{background:#eef7ee;border:1px solid #b8dcb9}\
.result .big{font-size:1.3rem;font-weight:650}\
.result .meta{color:#4b5a4b;font-size:.85rem}\
.error{background:#fdecec;border:1px solid #f2b8b8;color:#8a1c1c}\
footer{margin-top:1rem;text-align:center;color:#8a93a3;font-size:.8rem}";

/// The whole HTML document.
pub fn render(page: &Page) -> String {
    let bad = match &page.outcome {
        Some(Outcome::Failed { field: Some(f), .. }) => f.as_str(),
        _ => "",
    };
    let class = |name: &str| if bad == name { " class=\"bad\"" } else { "" };
    let mut html = String::with_capacity(8 * 1024);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str("<title>Currency converter · switchyard forex</title>\n<style>");
    html.push_str(STYLE);
    html.push_str("</style>\n</head>\n<body>\n<main>\n<div class=\"card\">\n");
    html.push_str("<h1>Currency converter</h1>\n<p class=\"sub\">European Central Bank euro reference rates, 1999 to today.</p>\n");
    html.push_str("<form method=\"get\" action=\"/\">\n");
    let _ = writeln!(
        html,
        "<label{}>Date<input type=\"date\" name=\"date\" value=\"{}\" required></label>",
        class("date"),
        escape(&page.form.date)
    );
    let _ = writeln!(
        html,
        "<label{}>Amount<input type=\"text\" name=\"amount\" inputmode=\"decimal\" value=\"{}\" required></label>",
        class("amount"),
        escape(&page.form.amount)
    );
    push_select(&mut html, "from", "From", class("from"), &page.currencies, &page.form.from);
    push_select(&mut html, "to", "To", class("to"), &page.currencies, &page.form.to);
    html.push_str("<button type=\"submit\">Convert</button>\n</form>\n");
    match &page.outcome {
        Some(Outcome::Converted(c)) => push_result(&mut html, c),
        Some(Outcome::Failed { message, .. }) => {
            let _ = writeln!(html, "<div class=\"error\" role=\"alert\">{}</div>", escape(message));
        }
        None => {}
    }
    html.push_str(
        "</div>\n<footer>forex-web · served through the switchyard mesh</footer>\n</main>\n</body>\n</html>\n",
    );
    html
}

fn push_select(html: &mut String, name: &str, label: &str, class: &str, codes: &[String], selected: &str) {
    let _ = writeln!(html, "<label{class}>{label}<select name=\"{name}\">");
    for code in codes {
        let mark = if code.eq_ignore_ascii_case(selected) { " selected" } else { "" };
        let code = escape(code);
        let _ = writeln!(html, "<option value=\"{code}\"{mark}>{code}</option>");
    }
    html.push_str("</select></label>\n");
}

fn push_result(html: &mut String, c: &Conversion) {
    let _ = writeln!(
        html,
        "<div class=\"result\"><div class=\"big\">{} = {}</div>\
         <div class=\"meta\">on {} (rate {}, ECB reference of {})</div></div>",
        escape(&c.amount),
        escape(&c.converted),
        escape(&c.date),
        escape(&c.rate),
        escape(&c.effective_date)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(outcome: Option<Outcome>) -> Page {
        Page {
            form: FormValues { date: "2016-09-05".into(), amount: "100".into(), from: "usd".into(), to: "JPY".into() },
            currencies: vec!["EUR".into(), "JPY".into(), "USD".into()],
            outcome,
        }
    }

    #[test]
    fn escapes_everything_dangerous() {
        assert_eq!(escape(r#"<a href='x'>&"</a>"#), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn renders_form_with_selection() {
        let html = render(&page(None));
        assert!(html.contains("<option value=\"USD\" selected>USD</option>"));
        assert!(html.contains("<option value=\"JPY\" selected>JPY</option>"));
        assert!(html.contains("value=\"2016-09-05\""));
        assert!(!html.contains("<script"));
        assert!(!html.contains("class=\"error\""));
    }

    #[test]
    fn renders_error_and_highlights_field() {
        let html = render(&page(Some(Outcome::Failed { message: "amount <b>".into(), field: Some("amount".into()) })));
        assert!(html.contains("<label class=\"bad\">Amount"));
        assert!(html.contains("amount &lt;b&gt;</div>"));
    }
}
