namespace Peft.Conformance.Tests;

/// <summary>Every method's rows: one line per method (its rows file in Rows/).</summary>
public static class ConformanceMatrix
{
    /// <summary>All rows.</summary>
    public static readonly IReadOnlyList<ConformanceCase> Cases = new[]
    {
        LoRARows.Cases,
        KroneckerRows.Cases,
        PromptTuneRows.Cases,
        DoRARows.Cases,
        IA3Rows.Cases,
        LNTuningRows.Cases,
        LoHaRows.Cases,
        HiRARows.Cases,
        VeRARows.Cases,
        BitFitRows.Cases,
        SSFRows.Cases,
        PiSSARows.Cases,
        LoftQRows.Cases,
        QLoRARows.Cases,
        EvaRows.Cases,
        CorDARows.Cases,
        RandLoRARows.Cases,
        VBLoRARows.Cases,
        SVFitRows.Cases,
        LoLDURows.Cases,
        DePTRows.Cases,
        PTuningRows.Cases,
        KaSARows.Cases,
        SoKARows.Cases,
    }.SelectMany(c => c).ToList();

    /// <summary>The rows as xunit theory data (by name).</summary>
    public static IEnumerable<object[]> Names => Cases.Select(c => new object[] { c.Name });

    /// <summary>The row named <paramref name="name"/>.</summary>
    public static ConformanceCase Get(string name) => Cases.Single(c => c.Name == name);

    /// <summary>The inserted-adapter rows (<see cref="InsertedConformanceCase"/>): one line per method.</summary>
    public static readonly IReadOnlyList<InsertedConformanceCase> Inserted = new[]
    {
        BottleneckRows.Cases,
        AttentionRows.Cases,
        MeftRows.Cases,
        LoFiTRows.Cases,
    }.SelectMany(c => c).ToList();

    /// <summary>The inserted rows whose method merges through its own call (<see cref="InsertedConformanceCase.OwnMerge"/>).</summary>
    public static IEnumerable<object[]> InsertedMergeableNames => Inserted.Where(c => c.OwnMerge is not null).Select(c => new object[] { c.Name });

    /// <summary>The selective rows (<see cref="SelectiveConformanceCase"/>): methods that choose which existing weights train.</summary>
    public static readonly IReadOnlyList<SelectiveConformanceCase> Selective = SelectiveRows.Cases;

    /// <summary>The selective rows as xunit theory data (by name).</summary>
    public static IEnumerable<object[]> SelectiveNames => Selective.Select(c => new object[] { c.Name });

    /// <summary>The selective row named <paramref name="name"/>.</summary>
    public static SelectiveConformanceCase GetSelective(string name) => Selective.Single(c => c.Name == name);

    /// <summary>The inserted-adapter rows as xunit theory data (by name).</summary>
    public static IEnumerable<object[]> InsertedNames => Inserted.Select(c => new object[] { c.Name });

    /// <summary>The inserted-adapter row named <paramref name="name"/>.</summary>
    public static InsertedConformanceCase GetInserted(string name) => Inserted.Single(c => c.Name == name);
}
