// Keyboard navigation of the hand-grading page (autograder/deploy/hand_grading.py); the only script the page runs.
document.addEventListener("keydown", (event) => {
  const inField = ["INPUT", "TEXTAREA"].includes(event.target.tagName);
  const go = (id) => { const link = document.getElementById(id); if (link) { event.preventDefault(); link.click(); } };
  if ((event.altKey && event.key === "ArrowRight") || (!inField && event.key === "j")) go("next");
  else if ((event.altKey && event.key === "ArrowLeft") || (!inField && event.key === "k")) go("prev");
  else if (event.ctrlKey && event.key === "Enter") { event.preventDefault(); document.getElementById("grade").requestSubmit(); }
});
document.addEventListener("DOMContentLoaded", () => {
  const points = document.getElementById("points");
  if (points) points.focus();
});
