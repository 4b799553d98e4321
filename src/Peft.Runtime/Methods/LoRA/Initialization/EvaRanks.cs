namespace Peft;

/// <summary>
/// EVA's pure rules (PEFT's <c>lora/eva.py</c>): the largest rank per layer, the rank budget and the redistribution of the
/// budget across layers by explained-variance ratio.
/// </summary>
public static class EvaRanks
{
    /// <summary>PEFT caps an unusually large rho (above this) at the largest parameter dimension divided by r.</summary>
    public const double RhoThreshold = 1000;

    /// <summary>
    /// Distributes <paramref name="budget"/> ranks (Σ r over the layers) over the layers: every layer offers its first
    /// <c>maxComponents</c> explained-variance ratios, the <paramref name="budget"/> largest of all win (ties: the earlier layer,
    /// the earlier component), and a layer's rank is the number of its values that won. A layer whose inputs equal another's
    /// (<paramref name="equalInputs"/>: layer → the layer whose PCA it shares) offers the same values; when it wins more than
    /// that layer, their ranks are swapped, so the shared PCA's layer has the larger rank (its convergence is checked up to it).
    /// </summary>
    /// <param name="layers">The layers in order: name, the explained-variance ratios of its PCA (those of the layer it shares
    /// with for an equal-input layer, descending), and its largest rank.</param>
    /// <param name="budget">The total rank.</param>
    /// <param name="equalInputs">Equal-input layer → the layer whose PCA it shares.</param>
    /// <returns>The rank per layer (0 for a layer that won nothing).</returns>
    public static Dictionary<string, int> Distribute(IReadOnlyList<(string Name, IReadOnlyList<double> Ratios, int MaxComponents)> layers, int budget,
        IReadOnlyDictionary<string, string> equalInputs)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(equalInputs);
        var offers = new List<(double Value, int Layer, int Component)>();
        for (int i = 0; i < layers.Count; i++)
        {
            var (_, ratios, max) = layers[i];
            for (int c = 0; c < Math.Min(max, ratios.Count); c++) offers.Add((ratios[c], i, c));
        }

        var counts = layers.ToDictionary(l => l.Name, _ => 0, StringComparer.Ordinal);
        foreach (var offer in offers.OrderByDescending(o => o.Value).ThenBy(o => o.Layer).ThenBy(o => o.Component).Take(Math.Max(0, budget)))
        {
            counts[layers[offer.Layer].Name]++;
        }

        foreach (var (layer, shared) in equalInputs)
        {
            if (counts[shared] < counts[layer])
            {
                (counts[shared], counts[layer]) = (counts[layer], counts[shared]);
            }
        }

        return counts;
    }
}
