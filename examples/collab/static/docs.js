// The document switcher. Each document is its own session on the server:
// the page of document NAME is /d/NAME/ and its WebSocket /d/NAME/ws; the
// page at / is the default document, "collab". Opening a name that does not
// exist yet creates it.
'use strict';
(() => {
  const form = document.getElementById('doc-form');
  const input = document.getElementById('doc-input');
  const m = location.pathname.match(/^\/d\/([^/]+)\//);
  document.getElementById('doc-name').textContent = m ? decodeURIComponent(m[1]) : 'collab';
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = input.value.trim();
    if (!/^[A-Za-z0-9._~:@-]{1,128}$/.test(name)) {
      input.setCustomValidity('letters, digits and - _ . ~ : @, at most 128');
      input.reportValidity();
      return;
    }
    const user = new URLSearchParams(location.search).get('user') || '';
    location.href = '/d/' + name + '/' + (user ? '?user=' + encodeURIComponent(user) : '');
  });
  input.addEventListener('input', () => input.setCustomValidity(''));
})();
