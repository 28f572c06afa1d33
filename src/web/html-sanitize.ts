import sanitizeHtml from 'sanitize-html';

/**
 * A message's HTML as a reviewer may see it: no script, no event handler, no `javascript:` or remote
 * URL, no form, no frame, no remote CSS (OWASP XSS Prevention, rule 6: sanitize with a well-kept
 * library). The result is shown in a sandboxed frame without allow-scripts whose own CSP forbids
 * every fetch but data: images (defence in depth: a sanitizer bug still loads nothing). Links keep
 * their text and show their real target after it, and lead nowhere (a reviewer copies a link
 * deliberately; the frame cannot navigate).
 */
export const FRAME_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'";

const ALLOWED_TAGS = [
  ...sanitizeHtml.defaults.allowedTags.filter((t) => t !== 'a'),
  'a',
  'img',
  'font',
  'center',
  'span',
  'div',
  'table',
  'thead',
  'tbody',
  'tr',
  'td',
  'th',
];

// CSS that fetches nothing: url(), image-set(), @import, expression() and any CSS escape (which could spell them) drop the whole declaration.
const REMOTE_CSS = /url\s*\(|image-set|@import|expression\s*\(|behavior\s*:|-moz-binding|\\/i;
const safeStyle = (style: string) =>
  style
    .split(';')
    .filter((d) => d.trim() !== '' && !REMOTE_CSS.test(d))
    .join(';');

export const sanitizeMessageHtml = (html: string): string =>
  sanitizeHtml(html, {
    allowedTags: ALLOWED_TAGS,
    allowedAttributes: {
      '*': ['style', 'title', 'align', 'dir', 'lang'],
      a: ['title'],
      img: ['src', 'alt', 'width', 'height'],
      td: ['colspan', 'rowspan', 'style', 'align'],
      th: ['colspan', 'rowspan', 'style', 'align'],
      font: ['color', 'size', 'face'],
    },
    // Only inline data: images are shown; every other source is removed below.
    allowedSchemes: [],
    allowedSchemesByTag: { img: ['data'] },
    allowProtocolRelative: false,
    disallowedTagsMode: 'discard',
    nonTextTags: ['script', 'style', 'textarea', 'option', 'noscript', 'title', 'iframe', 'object', 'embed'],
    transformTags: {
      a: (_tag, attribs) => ({ tagName: 'a', attribs: { title: `Link target: ${attribs.href ?? '(none)'}` } }),
      img: (tag, attribs) => {
        const src = attribs.src ?? '';
        if (/^data:image\/(png|gif|jpeg|webp);base64,/i.test(src)) return { tagName: tag, attribs };
        return { tagName: 'span', attribs: {}, text: `[remote image not loaded${attribs.alt ? `: ${attribs.alt}` : ''}]` };
      },
    },
    parseStyleAttributes: false,
  })
    .replace(/style="([^"]*)"/g, (_m, s: string) => `style="${safeStyle(s)}"`)
    // Each link's real target after its text, as text (the target was kept in the title above).
    .replace(
      /<a title="Link target: ([^"]*)">([\s\S]*?)<\/a>/g,
      (_m, href: string, text: string) => `<a>${text}</a> <small>[${href}]</small>`,
    );

/** The frame's whole document: the sanitized body under its own CSP. */
export const frameDocument = (html: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}"></head><body>${sanitizeMessageHtml(html)}</body></html>`;
