namespace Peft;

/// <summary>Options of an (IA)³ adapter, with Hugging Face PEFT's <c>IA3Config</c> defaults.</summary>
/// <param name="FeedForward">Scale the layer's input instead of its output (the layer is one of PEFT's
/// <c>feedforward_modules</c>).</param>
/// <param name="InitWeights">Initialise the scale to ones (PEFT's <c>init_ia3_weights</c>); false draws it from a standard
/// normal.</param>
/// <param name="FeedForwardModules">For configuration targeting: the modules that are feed-forward, matched as PEFT matches
/// <c>feedforward_modules</c> (a list entry matches a module whose name ends with it; a string is a full regular-expression
/// match). When set, it decides <see cref="FeedForward"/> for each targeted module.</param>
public sealed record IA3Options(bool FeedForward = false, bool InitWeights = true, TargetModules? FeedForwardModules = null) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => IA3Method.Instance;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (FeedForwardModules is { Kind: TargetModulesKind.AllLinear })
        {
            throw new PeftConfigurationException(
                $"IA3 adapter '{adapterName}'{layer.Where}: feedforward_modules cannot be \"all-linear\"; name the feed-forward layers (e.g. down_proj).",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new IA3Adapter(adapterName, layer, this);

    /// <summary>With <see cref="FeedForwardModules"/>, whether this module is feed-forward by PEFT's rule.</summary>
    /// <param name="fullName">The module's full dotted name.</param>
    /// <param name="targets">The configuration.</param>
    /// <returns>The options for that module.</returns>
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
        => FeedForwardModules is null ? this : this with { FeedForward = IA3Method.IsFeedForward(fullName, FeedForwardModules), FeedForwardModules = null };

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other) => other is IA3Options o && o.FeedForward == FeedForward;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("feedforward", FeedForward);
        yield return ("init_ia3_weights", InitWeights);
    }
}
