import { describe, expect, it } from 'vitest';
import { frameDocument, sanitizeMessageHtml } from './html-sanitize.js';

// Vectors in the style of the OWASP XSS Filter Evasion Cheat Sheet: each must leave nothing that runs or fetches.
const HOSTILE = [
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '<img src="https://tracker.example/p.gif">',
  '<img srcset="https://tracker.example/p.gif 1x">',
  '<svg onload=alert(1)><script>alert(2)</script></svg>',
  '<math><mtext><table><mglyph><style><img src=x onerror=alert(3)>',
  '<a href="javascript:alert(1)">x</a>',
  '<a href="JaVaScRiPt:alert(1)">x</a>',
  '<a href="data:text/html,<script>alert(1)</script>">x</a>',
  '<iframe src="https://evil.example"></iframe>',
  '<object data="https://evil.example/x.swf"></object>',
  '<embed src="https://evil.example/x.swf">',
  '<form action="https://evil.example"><input name=a></form>',
  '<meta http-equiv="refresh" content="0;url=https://evil.example">',
  '<base href="https://evil.example/">',
  '<link rel="stylesheet" href="https://evil.example/x.css">',
  '<style>@import url(https://evil.example/x.css);</style>',
  '<div style="background:url(https://evil.example/b.png)">x</div>',
  '<div style="background:\\75 rl(https://evil.example/b.png)">x</div>',
  '<div style="width: expression(alert(1))">x</div>',
  '<video poster="https://evil.example/p.png"><source src="https://evil.example/v.mp4"></video>',
  '<table background="https://evil.example/t.png"><tr><td background="https://evil.example/c.png">x</td></tr></table>',
  '<body onload=alert(1)>',
  '<p onclick="alert(1)" onmouseover="alert(2)">x</p>',
];

describe('message HTML for the review frame', () => {
  for (const h of HOSTILE) {
    it(`leaves nothing that runs or fetches from ${h.slice(0, 60)}`, () => {
      const out = sanitizeMessageHtml(h);
      expect(out).not.toMatch(/<(script|iframe|object|embed|form|meta|base|link|style|svg|math|video|source)\b/i);
      expect(out).not.toMatch(/\son[a-z]+\s*=/i);
      expect(out).not.toMatch(/\b(href|src|srcset|poster|background|action|data)\s*=/i);
      expect(out).not.toMatch(/url\s*\(|expression\s*\(|\\75/i);
    });
  }

  it('keeps text, layout and inline data: images, and shows each link target as text', () => {
    const out = sanitizeMessageHtml(
      '<p style="color:red">Hi <b>there</b></p><img src="data:image/png;base64,iVBORw0KGgo=" alt="logo"><a href="https://portal.example/r">your results</a>',
    );
    expect(out).toContain('<p style="color:red">Hi <b>there</b></p>');
    expect(out).toContain('src="data:image/png;base64,iVBORw0KGgo="');
    expect(out).toContain('<a>your results</a> <small>[https://portal.example/r]</small>');
  });

  it('wraps the result in a document whose own CSP fetches nothing but data: images', () => {
    expect(frameDocument('<p>x</p>')).toContain(
      `content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"`,
    );
  });
});
