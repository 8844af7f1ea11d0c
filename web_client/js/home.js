// Home page: header, language switch and tiles (kept out of index.html: the CSP allows no inline script).
import { initPage } from '/static/js/common.js';

initPage('home');
window.LC = { phase: 'idle', errors: [] };
