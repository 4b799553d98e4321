namespace Peft;

/// <summary>
/// Options of a LoRA adapter, with Hugging Face PEFT's <c>LoraConfig</c> defaults.
/// </summary>
/// <param name="Rank">The rank r (positive, at most min(in, out) of the layer). PEFT's <c>r</c>.</param>
/// <param name="Alpha">The scaling numerator (positive, finite). PEFT's <c>lora_alpha</c>.</param>
/// <param name="Dropout">Dropout probability on the adapter input, in [0, 1). PEFT's <c>lora_dropout</c>.</param>
/// <param name="UseRsLora">Scale by alpha / √r instead of alpha / r. PEFT's <c>use_rslora</c>.</param>
/// <param name="Init">How A and B are initialised. PEFT's <c>init_lora_weights</c>; <see cref="LoRAInit.PiSSA"/> and
/// <see cref="LoRAInit.OLoRA"/> also rewrite the base weight (docs/ARCHITECTURE.md, "Adapters that rewrite the base").</param>
/// <param name="PissaIterations">With <see cref="LoRAInit.PiSSA"/>: 0 for the full SVD (<c>"pissa"</c>), K ≥ 1 for a
/// randomized SVD with K power iterations (<c>"pissa_niter_K"</c>); 0 with any other initialisation.</param>
/// <param name="LoftQBits">With <see cref="LoRAInit.LoftQ"/>: 4 (NF4) or 8 (int8) bits for the quantized base; PEFT's
/// <c>loftq_config.loftq_bits</c>. 4 with any other initialisation.</param>
/// <param name="LoftQIterations">With <see cref="LoRAInit.LoftQ"/>: the quantize/SVD alternations, at least 1; PEFT's
/// <c>loftq_config.loftq_iter</c>. 1 with any other initialisation.</param>
/// <param name="CorDAMethod">With <see cref="LoRAInit.CorDA"/>: IPM (the r largest components of <c>W C</c>) or KPM (the r
/// smallest); PEFT's <c>corda_config.corda_method</c>. <see cref="CorDAMethod.Ipm"/> with any other initialisation.</param>
public sealed record LoRAOptions(
    int Rank = 8,
    double Alpha = 8.0,
    double Dropout = 0.0,
    bool UseRsLora = false,
    LoRAInit Init = LoRAInit.KaimingUniform,
    int PissaIterations = 0,
    int LoftQBits = 4,
    int LoftQIterations = 1,
    CorDAMethod CorDAMethod = CorDAMethod.Ipm) : PeftAdapterOptions
{
    /// <inheritdoc />
    public override PeftMethod Method => LoRAMethod.Instance;

    /// <summary>The factor s applied to <c>B A x</c>: alpha / r, or alpha / √r with <see cref="UseRsLora"/>.</summary>
    public double Scaling => LoRARules.Scaling(Alpha, Rank, UseRsLora);

    /// <summary>With <see cref="LoRAInit.EVA"/>, after <see cref="EvaInitialization.InitializeEva{TBatch}"/> (or from a file): the
    /// settings it ran with and the declared rank and alpha (for <c>eva_config</c>, <c>r</c> and <c>lora_alpha</c> in the file).
    /// Null before the initialisation and with any other <see cref="Init"/>.</summary>
    public EvaSettings? Eva { get; init; }

    /// <summary>LoftQ's storage format for <see cref="LoftQBits"/> (<see cref="LoftQInitialization.FormatFor"/>).</summary>
    public QuantizationFormat LoftQFormat => LoftQInitialization.FormatFor(LoftQBits);

    /// <summary>Checks the options for a layer of the given sizes.</summary>
    /// <param name="adapterName">The adapter name, for messages.</param>
    /// <param name="memberName">The member name, for messages (optional).</param>
    /// <param name="inFeatures">The layer's input size.</param>
    /// <param name="outFeatures">The layer's output size.</param>
    /// <exception cref="PeftConfigurationException">An option is out of range.</exception>
    public void Validate(string adapterName, string? memberName, long inFeatures, long outFeatures)
    {
        LowRank.Validate("LoRA", adapterName, memberName, Rank, Alpha, Dropout, inFeatures, outFeatures, Init);
        string where = $"LoRA adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (PissaIterations < 0)
        {
            throw new PeftConfigurationException(
                $"{where}: PissaIterations must be 0 (full SVD) or a positive number of power iterations, got {PissaIterations}.", memberName, adapterName);
        }

        if (PissaIterations != 0 && Init != LoRAInit.PiSSA)
        {
            throw new PeftConfigurationException(
                $"{where}: PissaIterations = {PissaIterations} applies to Init = LoRAInit.PiSSA only, but Init is {Init}. Set Init = LoRAInit.PiSSA or remove PissaIterations.",
                memberName, adapterName);
        }

        ValidateLoftQ(where, memberName, adapterName);
        if (Eva is not null && Init != LoRAInit.EVA)
        {
            throw new PeftConfigurationException(
                $"{where}: EVA settings apply to Init = LoRAInit.EVA only, but Init is {Init}. Set Init = LoRAInit.EVA or remove Eva.", memberName, adapterName);
        }

        Eva?.Config.Validate();

        if (!Enum.IsDefined(CorDAMethod))
        {
            throw new PeftConfigurationException($"{where}: unknown CorDAMethod {CorDAMethod}; use CorDAMethod.Ipm or CorDAMethod.Kpm.", memberName, adapterName);
        }

        if (CorDAMethod != CorDAMethod.Ipm && Init != LoRAInit.CorDA)
        {
            throw new PeftConfigurationException(
                $"{where}: CorDAMethod = {CorDAMethod} applies to Init = LoRAInit.CorDA only, but Init is {Init}. Set Init = LoRAInit.CorDA or remove CorDAMethod.",
                memberName, adapterName);
        }
    }

    /// <summary>True when the initialisation rewrites the base weight (<see cref="LoRAInit.PiSSA"/>, <see cref="LoRAInit.OLoRA"/>,
    /// <see cref="LoRAInit.LoftQ"/>, <see cref="LoRAInit.CorDA"/>).</summary>
    public override bool RewritesBase => LoRABaseInitialization.RewritesBase(Init);

    /// <summary>True for <see cref="LoRAInit.CorDA"/>: the adapter waits for <c>model.PreprocessCorDA(...)</c>.</summary>
    public override bool NeedsCalibration => Init == LoRAInit.CorDA;

    /// <inheritdoc />
    public override void Validate(string adapterName, PeftLayerInfo layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Validate(adapterName, layer.MemberName, layer.InFeatures, layer.OutFeatures);
    }

    /// <inheritdoc />
    public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new LoRAAdapter(adapterName, layer, this);

    /// <inheritdoc />
    public override PeftAdapterOptions ForModule(string fullName, PeftTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var (rank, alpha) = targets.PatternsFor(fullName);
        return this with { Rank = rank ?? Rank, Alpha = alpha ?? Alpha };
    }

    /// <inheritdoc />
    public override bool SameUpdate(PeftAdapterOptions other)
        => other is LoRAOptions o && o.Rank == Rank && o.Alpha == Alpha && o.UseRsLora == UseRsLora;

    /// <inheritdoc />
    public override IEnumerable<(string Name, object? Value)> Describe()
    {
        yield return ("r", Rank);
        yield return ("alpha", Alpha);
        yield return ("scaling", Scaling);
        yield return ("use_rslora", UseRsLora);
        yield return ("dropout", Dropout);
        if (LoRABaseInitialization.PeftName(Init, PissaIterations) is { } init)
        {
            yield return ("init_lora_weights", init);
        }

        if (Init == LoRAInit.EVA)
        {
            yield return ("init_lora_weights", "eva");
            if (Eva is { } eva)
            {
                yield return ("eva_rho", eva.Config.Rho);
                yield return ("eva_tau", eva.Config.Tau);
                yield return ("eva_whiten", eva.Config.Whiten);
                yield return ("eva_declared_r", eva.DeclaredRank);
            }
        }

        if (Init == LoRAInit.LoftQ)
        {
            yield return ("loftq_bits", LoftQBits);
            yield return ("loftq_iter", LoftQIterations);
        }

        if (Init == LoRAInit.CorDA)
        {
            yield return ("corda_method", CorDAInitialization.PeftName(CorDAMethod));
        }
    }

    private void ValidateLoftQ(string where, string? memberName, string adapterName)
    {
        if (Init != LoRAInit.LoftQ)
        {
            if (LoftQBits != 4 || LoftQIterations != 1)
            {
                throw new PeftConfigurationException(
                    $"{where}: LoftQBits = {LoftQBits} and LoftQIterations = {LoftQIterations} apply to Init = LoRAInit.LoftQ only, but Init is {Init}. Set Init = LoRAInit.LoftQ or remove them.",
                    memberName, adapterName);
            }

            return;
        }

        if (LoftQBits is not (4 or 8))
        {
            throw new PeftConfigurationException(
                $"{where}: LoftQBits must be 4 (NF4) or 8 (int8), got {LoftQBits} (PEFT's 2-bit normal-float map has no storage format here).", memberName, adapterName);
        }

        if (LoftQIterations < 1)
        {
            throw new PeftConfigurationException(
                $"{where}: LoftQIterations must be at least 1 (PEFT's loftq_iter), got {LoftQIterations}.", memberName, adapterName);
        }
    }
}

/// <summary>The validation every low-rank (LoRA-style) method shares; one copy, with messages naming the member and the fix.</summary>
internal static class LowRank
{
    public static void Validate(string method, string adapterName, string? memberName, int rank, double alpha, double dropout,
        long inFeatures, long outFeatures, LoRAInit init)
    {
        string where = $"{method} adapter '{adapterName}'{AdapterNameRules.Describe(memberName)}";
        if (rank <= 0)
        {
            throw new PeftConfigurationException($"{where}: rank must be positive, got {rank}.", memberName, adapterName);
        }

        if (!(alpha > 0) || double.IsInfinity(alpha))
        {
            throw new PeftConfigurationException($"{where}: alpha must be positive and finite, got {alpha}.", memberName, adapterName);
        }

        if (!(dropout >= 0 && dropout < 1))
        {
            throw new PeftConfigurationException($"{where}: dropout must be in [0, 1), got {dropout}.", memberName, adapterName);
        }

        if (!Enum.IsDefined(init))
        {
            throw new PeftConfigurationException($"{where}: unknown initialisation {init}.", memberName, adapterName);
        }

        if (method != "LoRA" && init == LoRAInit.EVA)
        {
            throw new PeftConfigurationException(
                $"{where}: Init = LoRAInit.EVA is supported for [LoRA] only (InitializeEva sets LoRA's A from the layer inputs' principal components and may change the rank). Use [LoRA(..., Init = LoRAInit.EVA)] or another Init.",
                memberName, adapterName);
        }

        if (method != "LoRA" && LoRABaseInitialization.RewritesBase(init))
        {
            throw new PeftConfigurationException(
                $"{where}: Init = LoRAInit.{init} rewrites the base weight, which is supported for [LoRA] only (combined with {method}'s own use of the base weight the residual and the update would not start at the original layer). Use [LoRA(..., Init = LoRAInit.{init})] or another Init.",
                memberName, adapterName);
        }

        long max = LoRARules.MaxRank(inFeatures, outFeatures);
        if (rank > max)
        {
            throw new PeftConfigurationException(
                $"{where}: rank {rank} exceeds min(in_features={inFeatures}, out_features={outFeatures}) = {max}. Use a rank of at most {max}.",
                memberName, adapterName);
        }
    }
}
