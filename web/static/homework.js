// The discreet homework marker staff see beside a patient (waiting room, room, check-in
// round): counts only, from the member's staff-only `staff_info.homework`, never content.
import { el } from "./lib/dom.js";

export function homeworkMarker(member) {
  const counts = member && member.staff_info && member.staff_info.homework;
  if (!counts || !counts.due) return null;
  const done = counts.handed_in >= counts.due;
  const marker = el("span", done ? "HW ✓" : "HW due", "badge homework" + (done ? " done" : ""));
  marker.title = "Homework for this session: " + counts.handed_in + " of " + counts.due + " handed in";
  marker.setAttribute("aria-label", marker.title);
  return marker;
}
