// Copy buttons for newly issued keys (the page shows each key only once).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = button.parentElement.querySelector(".copied");
  try {
    await navigator.clipboard.writeText(field.value);
    status.textContent = "Copied";
  } catch {
    field.select();
    status.textContent = "Press Ctrl+C to copy";
  }
});
