// Usage filters: choosing a named period clears the custom dates and applies it at once.
const period = document.querySelector("#usage-filters select[name=period]");
period?.addEventListener("change", () => {
  period.form.start.value = "";
  period.form.end.value = "";
  period.form.submit();
});
