//! What every report page shares: the style sheet, the one tiny filter script, and the
//! Content-Security-Policy that allows exactly those two by their hashes, so nothing a case
//! brings (a name, a log line) can run as script even if escaping ever failed.

use base64::Engine as _;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

/// The style sheet. Cases are `content-visibility: auto`: the browser lays out only those
/// on screen, so a report of a thousand timelines opens in seconds.
pub(crate) const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:82em;padding:0 1em;color:#1d1d1f}\
h1{margin-bottom:.2em}h2{margin-top:1.6em}\
table{border-collapse:collapse;width:100%}\
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
td{overflow-wrap:anywhere}\
.pass{color:#176117}.fail{color:#a31515}.error{color:#8a5a00}.skipped,.na,.notrun{color:#666}\
td.pass{background:#e8f5e9}td.fail{background:#fdecea}td.error{background:#fff4e0}td.na,td.notrun{background:#f4f4f4}\
code,pre{font-size:90%}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:.5em}\
.about{color:#444;margin:.2em 0}.about li{overflow-wrap:anywhere}\
[hidden]{display:none!important}\
#filters{margin:1em 0;padding:.5em;background:#f6f8fa}#filters label{margin-right:1em}\
.case{border-top:1px solid #ddd;padding:.5em 0 1em;content-visibility:auto;contain-intrinsic-size:auto 420px}\
.case h3{margin:.3em 0;overflow-wrap:anywhere}.case h3 small{font-weight:normal;color:#555}\
.badge{display:inline-block;min-width:3.5em;text-align:center;border-radius:3px;padding:0 .3em;margin-right:.4em;color:#fff;font-size:80%}\
.badge.pass{background:#2e7d32}.badge.fail{background:#c62828}.badge.error{background:#b26a00}.badge.skipped{background:#777}\
.desc{color:#444;margin:.2em 0;overflow-wrap:anywhere;white-space:pre-wrap}\
ol.violations li{overflow-wrap:anywhere;white-space:pre-wrap;margin:.3em 0}\
ol.violations .statement{color:#555;font-size:90%}\
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:85%;margin:.5em 0}\
.legend span{display:inline-flex;align-items:center;gap:.3em}\
svg.timeline{width:100%;height:auto;display:block;margin:.4em 0;font:10px system-ui,sans-serif}\
.lane-name{font-weight:600;font-size:11px}.lane-kind{fill:#777}\
.lane-sep{stroke:#e5e5e5}.axis line{stroke:#999}.axis .grid{stroke:#eee;fill:none}.axis text{fill:#555}\
.ph{fill:#e3e8f0}.ph-running{fill:#cfe8d2}.ph-succeeded{fill:#d8d8f0}.ph-failed{fill:#f3d0d0}.ph-gone{fill:#eee}\
.sw{fill:#f6c343}.sr{fill:#3fa34d}.st0{fill:#b8b8b8}.st1{fill:#5f5f5f}\
.state-label{fill:#fff;font-weight:600}.sw+.state-label,.st0+.state-label{fill:#222}\
.bs{fill:#3b82f6;fill-opacity:.28;stroke:#1d4ed8;stroke-width:1}\
.be{fill:#8b5cf6;fill-opacity:.2;stroke:#6d28d9;stroke-width:1;stroke-dasharray:3 2}\
.bf{fill:#14b8a6;fill-opacity:.22;stroke:#0f766e;stroke-width:1}\
.band-label{fill:#1d4ed8;font-weight:600}\
.fr1{fill:#0f766e}.fr0{fill:#f59e0b}.fs{fill:#1d4ed8}\
path.tk-ok{stroke:#3fa34d}path.tk-fail{stroke:#d32f2f;stroke-width:2}path.tk-hook{stroke:#7c3aed;stroke-width:2}\
path.tk-signal{stroke:#ea580c;stroke-width:2}path.tk-life{stroke:#222}\
line.start{stroke:#111;stroke-width:1.5}\
.off line,.off path{stroke:#d00;stroke-width:2.5;fill:none}.off text{fill:#d00;font-weight:700;font-size:12px}\
.fault line{stroke:#444;stroke-dasharray:4 3}.fault text{fill:#444}\
.pin line{stroke:#d00;stroke-width:1.5;stroke-dasharray:2 2}.pin circle{fill:#d00}.pin text{fill:#fff;font-weight:700}\
.legend .off line{stroke:#d00;stroke-width:2.5}.legend .fault line{stroke:#444}\
details>summary{cursor:pointer;color:#1d4ed8}\
.matrix{width:auto;min-width:40em}.matrix td,.matrix th{text-align:center;padding:.15em 1em}.matrix td:first-child,.matrix th:first-child{text-align:left}\
";

/// Shows only the cases that match the filters, and how many that is. Without script the
/// filters stay hidden and every case shows.
pub(crate) const FILTER_SCRIPT: &str = "\
const f=document.getElementById('filters');f.hidden=false;\
f.onchange=()=>{const v=f.verdict.value,r=f.rule.value,a=f.area.value;let n=0;\
for(const c of document.querySelectorAll('.case')){\
const s=(!v||c.dataset.verdict==v)&&(!r||c.dataset.rules.split(' ').includes(r))&&(!a||c.dataset.areas.split(' ').includes(a));\
c.hidden=!s;n+=s}document.getElementById('shown').textContent=n+' shown'};";

/// `'sha256-…'` of an inline script or style, as a Content-Security-Policy source.
pub(crate) fn csp_hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The policy of a page with the style sheet and, if `script`, the filter script.
pub(crate) fn content_security_policy(script: bool) -> String {
    let scripts = if script {
        csp_hash(FILTER_SCRIPT)
    } else {
        "'none'".to_owned()
    };
    format!(
        "default-src 'none'; style-src {}; script-src {scripts}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(STYLE)
    )
}

/// A whole page: the head with its policy, then `body`.
pub(crate) fn page(title: &str, script: bool, body: Markup) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(content_security_policy(script));
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (body)
                @if script {
                    script { (PreEscaped(FILTER_SCRIPT)) }
                }
            }
        }
    };
    markup.into_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_page_script_and_style_by_hash_only() {
        let policy = content_security_policy(true);
        assert!(policy.contains(&csp_hash(FILTER_SCRIPT)), "{policy}");
        assert!(policy.contains(&csp_hash(STYLE)), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        // Neither the script nor the style may contain what would end their element.
        assert!(!FILTER_SCRIPT.contains("</"));
        assert!(!STYLE.contains("</"));
    }
}
