using System;
using System.Collections.Generic;
using System.Linq;

namespace Peft.Targeting;

/// <summary>
/// "Did you mean ...?" for a misspelled module name: the candidates closest in edit distance. One source file, compiled
/// into the runtime (run-time targeting errors) and linked into the analyzers (PEFT0018), so both suggest the same names.
/// </summary>
internal static class NameSuggestions
{
    /// <summary>" Did you mean 'a' or 'b'?" for up to three candidates at the smallest distance, within
    /// max(2, length / 3) edits of <paramref name="entry"/>; "" when none is that close.</summary>
    public static string DidYouMean(string entry, IEnumerable<string> candidates)
    {
        int limit = Math.Max(2, entry.Length / 3);
        var scored = candidates
            .Select(c => (Name: c, Distance: EditDistance(entry, c)))
            .Where(c => c.Distance <= limit)
            .ToList();
        if (scored.Count == 0) return string.Empty;
        int closest = scored.Min(c => c.Distance);
        var best = scored
            .Where(c => c.Distance == closest)
            .Select(c => c.Name)
            .Distinct(StringComparer.Ordinal)
            .OrderBy(n => n, StringComparer.Ordinal)
            .Take(3)
            .Select(n => "'" + n + "'");
        return " Did you mean " + string.Join(" or ", best) + "?";
    }

    /// <summary>Levenshtein distance (insertions, deletions, substitutions each cost 1).</summary>
    public static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }
            var swap = previous;
            previous = current;
            current = swap;
        }
        return previous[b.Length];
    }
}
