// Printable report: dates are stored in UTC; show each <time datetime> in the reader's local time
// like the app's pages do. (A file, not inline: the pages' CSP allows only this origin's scripts.)
for (const t of document.querySelectorAll('time[datetime]')) {
  const d = new Date(t.getAttribute('datetime'));
  if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString(document.documentElement.lang);
}
