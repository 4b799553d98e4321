namespace Peft;

/// <summary>
/// Options of a VB-LoRA adapter, with Hugging Face PEFT's <c>VBLoRAConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r (positive). PEFT's <c>r</c> (4).</param>
/// <param name="NumVectors">PEFT's <c>num_vectors</c>: N, the bank's vectors (256).</param>
/// <param name="VectorLength">PEFT's <c>vector_length</c>: L, dividing the layer's in and out features (256).</param>
/// <param name="TopK">PEFT's <c>topk</c>, in [1, N] (2).</param>
/// <param name="Dropout">PEFT's <c>vblora_dropout</c>, in [0, 1): dropout on the adapter's input, in training only.</param>
/// <param name="InitVectorBankBound">PEFT's <c>init_vector_bank_bound</c> (0.02).</param>
/// <param name="InitLogitsStd">PEFT's <c>init_logits_std</c> (0.1).</param>
public sealed record VBLoRAOptions(
    int Rank = 4,
    int NumVectors = 256,
    int VectorLength = 256,
    int TopK = 2,
    double Dropout = 0.0,
    double InitVectorBankBound = 0.02,
    double InitLogitsStd = 0.1) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => VBLoRAMethod.Instance;

    /// <summary>Checks the options (without a layer).</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName)
    {
        string where = $"VB-LoRA adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        void Fail(string message) => throw new PeftConfigurationException($"{where}: {message}", memberName, adapterName);
        if (Rank <= 0) Fail($"rank must be positive, got {Rank}. Use a rank of 1 or more (PEFT's default is 4).");
        if (NumVectors <= 0) Fail($"NumVectors must be positive, got {NumVectors}. Use PEFT's default 256, or more for larger models.");
        if (VectorLength <= 0) Fail($"VectorLength must be positive, got {VectorLength}. Use a divisor of the layer sizes (PEFT's default 256).");
        if (!VBLoRARules.TopKFits(TopK, NumVectors)) Fail($"TopK must be between 1 and NumVectors ({NumVectors}), got {TopK}. Use PEFT's default 2.");
        if (!(Dropout >= 0 && Dropout < 1)) Fail($"Dropout must be in [0, 1), got {Dropout}. Use 0 for none.");
        if (!(InitVectorBankBound >= 0) || double.IsInfinity(InitVectorBankBound)) Fail($"InitVectorBankBound must be finite and not negative, got {InitVectorBankBound}. Use PEFT's 0.02.");
        if (!(InitLogitsStd >= 0) || double.IsInfinity(InitLogitsStd)) Fail($"InitLogitsStd must be finite and not negative, got {InitLogitsStd}. Use PEFT's 0.1.");
    }

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName);
        if (VBLoRARules.DivisibilityProblem(layer.InFeatures, layer.OutFeatures, VectorLength) is { } problem)
        {
            throw new PeftConfigurationException(
                $"VB-LoRA adapter '{adapterName}'{AdapterNameRules.Describe(layer.MemberName)}: {problem}. Use a common divisor of both sizes as VectorLength (PEFT splits A and B into length-L sub-vectors).",
                layer.MemberName, adapterName);
        }
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new VBLoRAAdapter(adapterName, layer, this);

    /// <summary>The rank, the bank's shape and top-k decide the update computed from the same logits and bank; dropout acts
    /// only in training and the init settings only at creation.</summary>
    /// <param name="other">The other options.</param>
    /// <returns>True when they compute the same update.</returns>
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is VBLoRAOptions o && o.Rank == Rank && o.NumVectors == NumVectors && o.VectorLength == VectorLength && o.TopK == TopK;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("num_vectors", NumVectors);
        yield return ("vector_length", VectorLength);
        yield return ("topk", TopK);
        yield return ("vblora_dropout", Dropout);
        yield return ("init_vector_bank_bound", InitVectorBankBound);
        yield return ("init_logits_std", InitLogitsStd);
    }
}
